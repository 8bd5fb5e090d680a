#!/usr/bin/env bash
# Set up xrec on a fresh machine: a venv in .venv with xrec and everything its
# tests need. Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
# pip, with the noise of this machine's unused local indexes filtered out (pip's exit status kept)
vpip() { .venv/bin/python -m pip "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }
VPIP=vpip
$VPIP install -q --upgrade pip

# PyTorch first, pinned: a CPU build of exactly this version lies on the CI machines' disk,
# and a looser spec could pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "[setup] installing torch==2.13.0"
  $VPIP install -q torch==2.13.0
fi

echo "[setup] installing xrec with all extras"
$VPIP install -q -e ".[all]"

# Vitis HLS C simulation: Xilinx's ap_int/ap_fixed/hls_stream headers (Apache-2.0) ship in the
# hls4ml wheel; only the headers are used, so install it without its dependencies.
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('hls4ml') is None)"; then
  echo "[setup] installing hls4ml==1.3.0 (headers only, --no-deps)"
  $VPIP install -q --no-deps hls4ml==1.3.0
fi

# Real labelled data for accuracy reports (xrec.data): MovieLens-100K ships in the recbole wheel
# (MIT); only its data files are read, so install it without its (heavy) dependencies.
if ! .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('recbole') is None)"; then
  echo "[setup] installing recbole==1.2.1 (MovieLens-100K data files only, --no-deps)"
  $VPIP install -q --no-deps recbole==1.2.1
fi

# System packages: the C++ compiler and cmake (cpu target, C++ runtime), cpp-httplib and
# nlohmann-json (the inference server), XRT headers (the HLS target's host code).
APT_PKGS=(g++ cmake pkg-config libcpp-httplib-dev nlohmann-json3-dev libxrt-dev)
missing=()
for pkg in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing ${missing[*]} from Debian"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "[setup] done: $(.venv/bin/python -c 'import xrec, torch; print("xrec", xrec.__version__, "torch", torch.__version__)')"
