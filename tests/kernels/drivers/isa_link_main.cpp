#include <cstdio>
#include <cstring>
extern "C" double run_avx512();
extern "C" double run_avx2();
extern "C" double run_scalar();
int main(int argc, char** argv) {
  // argv[1]: which builds this CPU can run ("avx512,avx2,scalar" or a subset)
  const char* can = argc > 1 ? argv[1] : "scalar";
  std::printf("scalar %.9g\n", run_scalar());
  if (std::strstr(can, "avx2")) std::printf("avx2 %.9g\n", run_avx2());
  if (std::strstr(can, "avx512")) std::printf("avx512 %.9g\n", run_avx512());
  return 0;
}
