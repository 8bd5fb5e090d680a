"""xrec.cost: the work a graph implies and a roofline time model on catalogued hardware.

    from xrec.cost import graph_work, load_device, predict
    gw = graph_work(g, batch=512, cache_bytes=dev.cache_bytes)   # per node / stage: FLOPs, bytes, calls
    dev = load_device("h100-sxm")                                # compiler/cost/hardware/h100-sxm.json
    p = predict(g, dev, target="triton", batch=512)              # per stage lower-bound seconds

Layout: ``work.py`` (Work, GraphWork), ``rules/`` (one cost function per op group, registered per
Op), ``context.py`` (symbol binding, cache shares), ``cache.py`` (cache-hit estimate),
``catalogue.py`` + ``hardware/*.json`` (devices), ``model.py`` (PerfParams, predict), ``perf.py`` (one
performance model per target, calibration profiles), ``cli.py`` (``xrec cost``).
"""
from .cache import IdDistribution, hit_fraction, main_rows
from .catalogue import CatalogueError, Device, Figure, device_names, load_device
from .graph import graph_work
from .model import PerfParams, Prediction, StageTime, predict, predict_work
from .perf import load_profile, perf_model_for, predict_target, profile_path, register_perf_model
from .rules import CostError, known_ops, register_cost
from .work import STAGES, GraphWork, NodeWork, Work

__all__ = ["IdDistribution", "hit_fraction", "main_rows", "CatalogueError", "Device", "Figure", "device_names",
           "load_device", "graph_work", "PerfParams", "Prediction", "StageTime", "predict", "predict_work",
           "load_profile", "perf_model_for", "predict_target", "profile_path", "register_perf_model",
           "CostError", "known_ops", "register_cost", "STAGES", "GraphWork", "NodeWork", "Work"]
