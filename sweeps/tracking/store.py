"""A new SQLite tracking store, created with its artifacts beside the database."""

from __future__ import annotations

from sweeps.tracking.uri import sqlite_path


def create_store_beside(tracking_uri: str) -> None:
    """Create a new SQLite store with its artifact root beside the database.

    MLflow's client creates a missing database with the "Default" experiment, whose artifacts
    go to ./mlruns of the current directory: for the service's first driver, that was inside
    the first sweep's folder (the driver runs there). Created here first, "Default" keeps
    them in <db folder>/mlartifacts/0, next to ours (`_get_or_create_experiment`)."""
    db = sqlite_path(tracking_uri)
    if db is None or db.exists():
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db.parent.mkdir(parents=True, exist_ok=True)
    # (MLflow caches the engine by URI: the client below reuses it.)
    SqlAlchemyStore(tracking_uri, (db.parent / "mlartifacts").as_uri())
