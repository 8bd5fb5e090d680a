"""Locating the Xilinx arbitrary-precision headers (ap_int.h, ap_fixed.h) for C simulation.

xrec does not ship them. The hls4ml wheel on PyPI carries Xilinx's
Apache-2.0 release of them under ``hls4ml/templates/vivado/ap_types``::

    pip install --no-deps hls4ml==1.3.0

(``--no-deps``: only the header files are used, not hls4ml itself). The files
keep their Xilinx copyright, licence and disclaimer text where they are;
xrec only puts their folder on the include path. Another copy (e.g. a Vitis
installation's ``include`` folder) can be given with the target option
``include_dir``.

``hls::stream`` comes from xrec's own C-sim model (``xrec._hls/sim``), which
aborts on a read from an empty stream instead of only warning.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

INSTALL_HINT = ("pip install --no-deps hls4ml==1.3.0 (Apache-2.0 Xilinx ap_types headers), or give the "
                "hls target option include_dir=/path/to/folder/with/ap_int.h")
_REQUIRED = ("ap_int.h", "ap_fixed.h", "ap_common.h")


class HeadersNotFound(RuntimeError):
    pass


def _hls4ml_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("hls4ml")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "templates" / "vivado" / "ap_types"
        if p.is_dir():
            return p
    return None


def ap_types_dir(include_dir: str | None = None) -> Path:
    """The folder holding ap_int.h: ``include_dir`` if given, else the installed hls4ml wheel's copy."""
    if include_dir:
        p = Path(include_dir).expanduser()
        missing = [h for h in _REQUIRED if not (p / h).is_file()]
        if missing:
            raise HeadersNotFound(f"hls target option include_dir={str(p)!r} lacks {', '.join(missing)}; "
                                  "point it at the folder that holds ap_int.h")
        return p.resolve()
    p = _hls4ml_dir()
    if p is None:
        raise HeadersNotFound(f"the Xilinx ap_types headers are not installed; {INSTALL_HINT}")
    missing = [h for h in _REQUIRED if not (p / h).is_file()]
    if missing:
        raise HeadersNotFound(f"{p} lacks {', '.join(missing)}; reinstall: {INSTALL_HINT}")
    return p.resolve()


def shim_dir() -> Path:
    """xrec's C-sim headers (hls_stream.h); must come before ap_types on the include path."""
    import xrec._hls
    return Path(list(xrec._hls.__path__)[0]) / "sim"


def xrt_stub_dir() -> Path:
    import xrec._hls
    return Path(list(xrec._hls.__path__)[0]) / "xrt_stub"


def xrt_include_dir() -> Path | None:
    """Where libxrt-dev put XRT's headers (``xrt/xrt_device.h``), if installed."""
    for base in (Path("/opt/xilinx/xrt/include"), Path("/usr/include/xrt"), Path("/usr/include")):
        if (base / "xrt" / "xrt_device.h").is_file() and (base / "xrt" / "xrt_kernel.h").is_file():
            return base
    return None


def licence_note(include_dir: str | None = None) -> str:
    """Where the headers came from, for the artifact's README."""
    try:
        p = ap_types_dir(include_dir)
    except HeadersNotFound as e:
        return str(e)
    return (f"C simulation used the Xilinx ap_types headers at {p} (Copyright Xilinx, Inc., "
            "Apache License 2.0, licence and disclaimer kept in those files); they are not copied here.")
