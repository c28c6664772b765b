"""MLflow tracking: the only package that imports MLflow.

uri.py (where the store is), naming.py (keys, tags, run names, limits), writer.py (the one
background writer thread), sql.py (bulk writes into MLflow's SQL store), tracker.py (a sweep's
parent and child runs), stale.py (closing the runs of a process that died).
"""
