"""xrec: one import namespace ``xrec`` mapped onto the design card's folders.

compiler/ -> xrec            (frontend, IR, passes, pipeline, CLI, zoo, runtime)
bench/    -> xrec.bench      (the `xrec bench` harness; bench/suites, results, serving are not modules)
targets/  -> xrec.targets    (one code generator per target)
kernels/  -> xrec.kernels    (hand-written kernel templates)
csrc/     -> xrec._csrc      (C++ runtime sources, shipped as package data)
hls/      -> xrec._hls       (HLS support files, shipped as package data)
"""
import os

from setuptools import find_packages, setup

def mapped(prefix, folder):
    pkgs = {prefix: folder}
    for sub in find_packages(folder):
        pkgs[f"{prefix}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    return pkgs

package_dir = {}
package_dir.update(mapped("xrec", "compiler"))
package_dir.update(mapped("xrec.bench", "bench"))
package_dir.update(mapped("xrec.targets", "targets"))
package_dir.update(mapped("xrec.kernels", "kernels"))
# data-only packages: shipped when their folder exists
package_dir.update({name: folder for name, folder in (("xrec._csrc", "csrc"), ("xrec._hls", "hls"))
                    if os.path.isdir(folder)})

EXTRAS = {
    # expecttest: torch.testing._internal (OpInfo samples, tests/frontend/test_opinfo.py) imports it
    "test": ["pytest>=8", "pytest-xdist>=3", "tritonclient[http]==2.73.0", "expecttest==0.3.0"],
    "triton": ["triton==3.9.0"],
    "xla": ["jax==0.10.2", "jaxlib==0.10.2"],
    "hls": [],
    # MovieLens-100K for xrec.data; install it with --no-deps (scripts/setup.sh does): only its files are read
    "data": ["recbole==1.2.1"],
    # TorchRec models as input (tests/frontend/test_torchrec.py). torchrec==1.8.0 itself must go in after
    # these with --no-deps (scripts/setup.sh does): its declared dependency `fbgemm-gpu` pulls the GPU
    # build, which shadows the CPU one; fbgemm-gpu-cpu 1.9.0 does not load with torch 2.13
    "torchrec": ["fbgemm-gpu-cpu==1.8.0", "tensordict", "pyre-extensions", "tqdm", "torchmetrics==1.0.3"],
    "bench": ["pytest-benchmark>=4", "matplotlib>=3.8", "onnx==1.23.2", "onnxruntime==1.32.0",
              "onnxscript==0.7.2", "apache-tvm==0.27.0.post1", "rich==15.0.0"],
}
EXTRAS["all"] = sorted({r for name, reqs in EXTRAS.items() if name not in ("data", "torchrec") for r in reqs})
# compiling for TPU without a TPU (684 MB; not in "all", not in CI: the TPU tests skip without it)
EXTRAS["tpu"] = ["libtpu==0.0.42.*"]

setup(
    name="xrec",
    version="0.1.0",
    description="Ahead-of-time compiler for recommendation-model inference",
    python_requires=">=3.10",
    packages=list(package_dir),
    package_dir=package_dir,
    package_data={**{k: ["*", "**/*"] for k in ("xrec._csrc", "xrec._hls") if k in package_dir},
                  "xrec.bench": ["*.c", "*.cpp"], "xrec.kernels": ["cpu/*.h", "cpu/*.cpp"], "xrec.targets.cpu": ["*.cpp"],
                  "xrec.cost": ["hardware/*.json"], "xrec.targets.triton": ["calibration/*.json"]},
    install_requires=["torch>=2.6,<2.15", "numpy>=1.24", "sympy>=1.12"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["xrec=xrec.cli:main"]},
)
