"""Compression: choose per-table precision, apply it, and measure what it costs in accuracy.

``plan_precision`` decides each table's precision (given, uniform, or automatic
under a memory budget or an accuracy bound: bigger, colder tables get fewer
bits); ``measure`` compares the compressed graph with the fp32 graph: on the
real test split for models from ``xrec.data`` (``evaluation_sets``), else on
calibration inputs with labels drawn from the fp32 model (labelled synthetic);
the numbers go into the manifest and are printed by ``xrec compile``.
"""
from .accuracy import AccuracyReport, EvalSet, EvalSets, auc, evaluation_sets, logloss, measure
from .plan import CompressionError, plan_precision, table_stats

__all__ = ["AccuracyReport", "EvalSet", "EvalSets", "auc", "evaluation_sets", "logloss", "measure",
           "CompressionError", "plan_precision", "table_stats"]
