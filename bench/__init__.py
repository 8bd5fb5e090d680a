"""``xrec bench``: measure xrec against its peers, honestly.

One run measures every system on the same inputs, in the same process, with
samples interleaved (A B C, B C A, ...) so that slow drifts of the machine
(memory bandwidth on a shared VM drifts for minutes at a time) hit all
systems alike. See bench/README.md for the method.

The folder bench/ is this package (setup.py maps it like targets/); bench/suites
(pytest-benchmark files), bench/results (pages) and bench/serving (the load
test of ``xrec serve``) live beside it and are not modules of it.

Modules (import only what you need; optional systems load lazily):

* :mod:`.timing`    interleaved timing and statistics (the one timing core)
* :mod:`.systems`   one adapter per system (eager, TorchScript, inductor, ONNX
                    Runtime, TVM, xrec targets) -> a callable, or a reason
* :mod:`.rewrites`  the model rewrites a practitioner applies before export
* :mod:`.machine`   CPU model, ISA, cores, caches, memory, background load
* :mod:`.roofline`  stream / gather / FMA probes (probes.c, built with g++)
* :mod:`.model_bench` the model benchmark, :mod:`.kernel_bench` the kernel suites
* :mod:`.kernel_calls` the kernels/cpu templates called directly (kernel_calls.cpp)
* :mod:`.report`    table, JSON, markdown page; :mod:`.plot` the PNG charts
* :mod:`.cli`       ``xrec bench``
"""
SCHEMA = "xrec-bench/1"
