"""Shared fixtures: small data and tiny specs keep the suite fast on 2 cores."""

from __future__ import annotations

import os
import tempfile  # noqa: E402

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Tests never write into the working tree: one scratch MLflow store and compile cache.
_SCRATCH = tempfile.mkdtemp(prefix="goldilocks-tests-")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SCRATCH}/mlflow.db"
os.environ.setdefault("GOLDILOCKS_COMPILE_CACHE", f"{_SCRATCH}/jax-cache")
# Never join a Ray head a developer keeps (`goldilocks ray up`): the tests' own state folder.
os.environ["GOLDILOCKS_STATE_DIR"] = f"{_SCRATCH}/state"
# One fixed lane width: measuring it for every structure of the suite would cost minutes.
# tests/sweeps/core/test_lane_width.py measures it (and the width a sweep reports) itself.
os.environ.setdefault("GOLDILOCKS_CPU_LANE_WIDTH", "8")

import pytest  # noqa: E402

from sweeps.core.data import load_dataset  # noqa: E402

# `make test` runs the suite in two phases (tests/run_suite.py). First two pytest processes side
# by side: the "system" tests, those that start Ray or private servers (Ray's `ray stop` and a
# cluster's CPUs must not meet a second cluster), one after another in one; every other test in
# the other. Then the "alone" tests, whose assertions time the machine (latency percentiles, the
# lane-width measurement), with nothing beside them.
SYSTEM_PATHS = (
    "tests/faults/",
    "tests/deploy/test_topology.py",
    "tests/service/test_ray.py",
    "tests/service/test_warm_ray.py",
    "tests/sweeps/exec/test_local_head.py",
    "tests/sweeps/exec/test_ray_",
    "tests/sweeps/test_pipeline.py",
)
ALONE_PATHS = ("tests/faults/test_fault_load.py", "tests/sweeps/core/test_lane_width.py")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by them
def pytest_collection_modifyitems(config, items):
    root = str(config.rootpath)
    for item in items:
        path = str(item.path).removeprefix(root + os.sep)
        if path.startswith(ALONE_PATHS):
            item.add_marker(pytest.mark.alone)
        elif path.startswith(SYSTEM_PATHS) or "local_ray" in item.fixturenames:
            item.add_marker(pytest.mark.system)


@pytest.fixture(scope="session")
def digits():
    return load_dataset(name="digits", val_fraction=0.2, seed=0)


@pytest.fixture(scope="session")
def iris():
    return load_dataset(name="iris", val_fraction=0.2, seed=0)


def tiny_spec_dict(**overrides) -> dict:
    """A complete, valid, fast spec as a dict; override top-level sections."""
    spec = {
        "name": "tiny",
        "experiment": "goldilocks-tests",
        "data": {"name": "iris", "val_fraction": 0.2},
        "model": {"name": "mlp", "hidden": [16]},
        "loss": "cross_entropy",
        "train": {"steps": 40, "batch_size": 32, "eval_every": 10, "seeds": [0]},
        "search": {
            "method": "grid",
            "learning_rate": {"min": 1e-4, "max": 100.0, "num": 7, "scale": "log"},
            "optimizer": ["sgd", "adam"],
            "schedule": ["constant"],
        },
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def tiny_spec():
    return tiny_spec_dict()


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray with 2 CPUs, started as `goldilocks run` starts it."""
    import ray

    from sweeps.exec.raytune.cluster import init_ray
    from sweeps.spec import parse_spec

    assert init_ray(parse_spec(tiny_spec_dict())) == "local"
    assert ray.cluster_resources()["CPU"] == 2
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _no_persistent_compile_cache_leaks():
    """An in-process `goldilocks run --executor inline` (CliRunner) turns JAX's persistent
    compile cache on for the process; a later Ray test in it would then not compile ahead
    (sweeps/core/compile_cache.py). Each test starts with it as the process had it."""
    yield
    import sys

    if "jax" in sys.modules:
        import jax
        from jax._src import compilation_cache

        if jax.config.jax_compilation_cache_dir:
            jax.config.update("jax_compilation_cache_dir", None)
            compilation_cache.reset_cache()
