"""Trained MovieLens-100K models as ``xrec`` MODEL factories (``path/to/file.py:factory``).

    xrec compile "$(python -c 'import xrec.data.factories as f; print(f.__file__)'):deepfm" \\
        --target cpu --quantize int8          # the accuracy report is on the real test split

Each factory returns the trained model (loaded from the cache, or trained on first use, ~20 s) and
tracing inputs. Absolute imports only: the CLI loads this file by path.
"""
from xrec.data import example_inputs, trained


def _make(name):
    model = trained(name)
    return model, example_inputs(model)


def dlrm():
    return _make("dlrm")


def dcn_v2():
    return _make("dcn-v2")


def deepfm():
    return _make("deepfm")


def wide_deep():
    return _make("wide-deep")


def two_tower():
    return _make("two-tower")
