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
mkdir -p .venv/.setup
LOG=.venv/.setup/last.log
: > "$LOG"
# pip, quiet: its output (setuptools' editable-install warning box, this machine's unused local
# indexes) goes to $LOG and is shown only when pip fails
vpip() {
  if ! .venv/bin/python -m pip "$@" >>"$LOG" 2>&1; then
    grep -v '^WARNING: Location' "$LOG" >&2 || true
    echo "[setup] pip $* failed (log above, also in $LOG)" >&2
    return 1
  fi
}
VPIP=vpip
# a stamp per step: a step is redone only when what it depends on changed
stamp_ok() { [ -f ".venv/.setup/$1" ] && [ "$(cat ".venv/.setup/$1")" = "$2" ]; }
stamp() { echo "$2" > ".venv/.setup/$1"; }

if ! stamp_ok pip 1; then
  $VPIP install -q --upgrade pip && stamp pip 1
fi

# PyTorch first, pinned: a CPU build of exactly this version lies on the CI machines' disk,
# and a looser spec could pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "[setup] installing torch==2.13.0"
  $VPIP install -q torch==2.13.0
fi

# xrec itself (editable): reinstalled only when setup.py changed or the installed xrec is not this checkout
want="$(sha256sum setup.py | cut -d' ' -f1) $(pwd)"
here_ok() { .venv/bin/python -c "import sys, importlib.util as u, pathlib; s = u.find_spec('xrec'); sys.exit(s is None or pathlib.Path(s.origin).resolve().parent != pathlib.Path('compiler').resolve())" 2>/dev/null; }
if ! stamp_ok xrec "$want" || ! here_ok; then
  echo "[setup] installing xrec with all extras"
  $VPIP install -q -e ".[all]" && stamp xrec "$want"
fi

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

# TorchRec models as input (the `torchrec` extra): FBGEMM's CPU build first, then torchrec==1.8.0
# without its declared dependencies (they name `fbgemm-gpu`, the GPU build, which shadows the CPU one
# and must never be installed), then torchrec's other needs.
TORCHREC_PINS="fbgemm-gpu-cpu==1.8.0 torchrec==1.8.0 torchmetrics==1.0.3"
torchrec_ok() { .venv/bin/python - "$TORCHREC_PINS" <<'PYEOF' 2>/dev/null
import importlib.metadata as m, sys
ok = all(m.version(p.split("==")[0]) == p.split("==")[1] for p in sys.argv[1].split())
for p in ("tensordict", "pyre-extensions", "tqdm"):
    m.version(p)
try:
    m.version("fbgemm-gpu"); ok = False
except m.PackageNotFoundError:
    pass
sys.exit(not ok)
PYEOF
}
if ! stamp_ok torchrec "$TORCHREC_PINS" || ! torchrec_ok; then
  echo "[setup] installing torchrec==1.8.0 with fbgemm-gpu-cpu==1.8.0 (--no-deps; never the GPU fbgemm-gpu)"
  if .venv/bin/python -c "import importlib.metadata as m; m.version('fbgemm-gpu')" 2>/dev/null; then
    $VPIP uninstall -q -y fbgemm-gpu
    $VPIP install -q --force-reinstall --no-deps fbgemm-gpu-cpu==1.8.0
  fi
  $VPIP install -q fbgemm-gpu-cpu==1.8.0
  $VPIP install -q --no-deps torchrec==1.8.0
  $VPIP install -q tensordict pyre-extensions tqdm torchmetrics==1.0.3
  torchrec_ok && stamp torchrec "$TORCHREC_PINS"
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
  # apt's and debconf's chatter goes to $LOG, shown only on failure
  if ! { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
           "${missing[@]}"; } >>"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "[setup] apt-get install ${missing[*]} failed (log above, also in $LOG)" >&2
    exit 1
  fi
fi
echo "[setup] done: $(.venv/bin/python -c 'import importlib.metadata as m; print("xrec", m.version("xrec"), "torch", m.version("torch"))')"
