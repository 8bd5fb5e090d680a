"""``xrec plan``: pick hardware, count, target, embedding precision and batching for a QPS and p99 bound.

Layout: ``queueing.py`` (dynamic-batching latency model and its simulation), ``space.py`` (the
configurations and the IR built per target and precision), ``score.py`` (time, memory, cost, energy,
accuracy per configuration; why a configuration is rejected), ``report.py`` (ranked table, Pareto
front, plot), ``cli.py`` (the subcommand, plan.json).
"""
