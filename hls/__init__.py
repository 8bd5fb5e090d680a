"""HLS support files shipped with xrec (package data, no Python API).

sim/hls_stream.h   xrec's C-simulation model of ``hls::stream``: reading an
                   empty stream (a hardware deadlock) or leaving data in a
                   stream aborts the simulation with the stream's name.
xrt_stub/          minimal declarations of XRT's native C++ API, used only to
                   syntax-check generated host code where libxrt-dev is absent.
"""
