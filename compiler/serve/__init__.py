"""xrec.serve: the KServe v2 / Open Inference Protocol inference server for cpu artifacts.

The server itself is C++ (csrc/server: cpp-httplib, nlohmann-json, the artifact's C ABI
through csrc/xrec_runtime.h). This package builds it (``build.server_binary``, cached by
source hash), runs it from the CLI (``xrec serve``, cli.py) and as a child process
(``process.ServerProcess``, for tests and benchmarks).
"""
