"""Ray in real topologies and under faults, through the real CLI in subprocesses:
a two-node cluster on loopback, a worker killed mid-trial, a driver interrupted and resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_spec_dict
from mlflow.tracking import MlflowClient
from ray_cluster import alive_nodes, base_env, ray_cluster
from testlib import sweep_points
from user_files import write_user_files

GOLDILOCKS = [sys.executable, "-m", "service.cli"]


def _spec_file(folder: Path, **overrides) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec_dict(**overrides)))
    return path


def _env(**extra: str) -> dict[str, str]:
    return base_env(**extra)


def _lane_runs(uri: str, sweep: Path) -> tuple[object, list]:
    state = json.loads((sweep / "mlflow_state.json").read_text())
    client = MlflowClient(uri)
    parent = client.get_run(state["parent_run_id"])
    children = client.search_runs(
        [state["experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{state['parent_run_id']}'",
        max_results=1000,
    )
    return parent, children


def _assert_one_complete_run_per_lane(uri: str, sweep: Path, steps: int) -> None:
    report = json.loads((sweep / "report.json").read_text())
    parent, children = _lane_runs(uri, sweep)
    assert parent.info.status == "FINISHED"
    assert len(children) == len(report["lanes"])  # no duplicates across retries / resume
    assert {r.info.run_id for r in children} == {lane["run_id"] for lane in report["lanes"]}
    client = MlflowClient(uri)
    for run in children:
        assert run.info.status == "FINISHED"
        history = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert len(history) == len(set(history)), "a metric point was logged twice"
        assert max(history) == steps


@pytest.fixture
def two_node_cluster():
    """`ray start --head` plus a second node with its own resources, on loopback."""
    with ray_cluster(worker_cpus=[1]) as cluster:
        yield cluster


def test_sweep_runs_its_trials_across_a_two_node_cluster(two_node_cluster, tmp_path):
    """With the user's own model and loss from a file beside the spec: the worker node has
    neither the file nor its folder on its path, and `goldilocks run` starts elsewhere."""
    address, auth = two_node_cluster
    user = tmp_path / "project"
    write_user_files(user)
    spec = _spec_file(
        user,
        model={"import": "nets.py:Net", "args": {"width": 8}},
        loss={"import": "nets.py:smoothed_ce"},
        metrics={"import": "nets.py:accuracy", "metric": "acc"},
        # long enough (30 reports) that the first trial is still training when the second
        # node's trial process is up: Tune would otherwise reuse the first actor for both
        train={"steps": 300, "batch_size": 32, "eval_every": 10, "seeds": [0]},
        search={"learning_rate": {"min": 1e-3, "max": 1.0, "num": 3}, "optimizer": ["sgd", "adam"]},
        resources={"cpus_per_trial": 1, "max_concurrent_trials": 2},
    )
    sweep = tmp_path / "sweep"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [*GOLDILOCKS, "run", str(spec), "--out", str(sweep), "--executor", "ray"],
        env=_env(RAY_ADDRESS=address, MLFLOW_TRACKING_URI=uri, **auth),
        capture_output=True, text=True, timeout=600, cwd=elsewhere,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((sweep / "report.json").read_text())
    assert report["metric"] == "acc" and {g["loss"] for g in report["groups"]} == {"smoothed_ce"}
    assert max(lane["val_metric"] for lane in report["lanes"]) > 0.8  # it trained, on iris
    nodes = alive_nodes(address, auth)
    assert len(nodes) == 2
    used = {p["node_id"] for p in sweep_points(sweep)}
    # Two one-CPU trials at once on two one-CPU nodes: both nodes trained a population.
    assert used == nodes
    _assert_one_complete_run_per_lane(uri, sweep, 300)


def _host_chose(cache: Path, spec: Path, width: int) -> None:
    """This host's lane-width cache says: this spec's population trains at `width` (as if
    the driver of an earlier sweep had measured it)."""
    from sweeps.core import lane_width as tuner
    from sweeps.core.lane_policy import structure_id
    from sweeps.exec.trial import structure_for, trial_threads
    from sweeps.pipeline import prepare
    from sweeps.spec import load_spec

    prepared = prepare(load_spec(spec))
    (pop,) = prepared.populations
    sid = structure_id(structure_for(prepared.spec, pop, prepared.data), prepared.data)
    # every width this population could take timed, `width` much the cheapest
    figures = {w: (1e-4 if w == width else 1e-2) for w in tuner.widths_for(len(pop.lanes))}
    threads = trial_threads(prepared.spec, 1)  # as its one trial will train
    key = tuner.cache_key(sid, "cpu", threads)
    tuner.WidthCache(cache).put_figures(key, figures, structure=sid, threads=threads)


def test_a_killed_trial_resumes_from_its_checkpoint(tmp_path):
    spec = _spec_file(
        tmp_path,
        train={"steps": 40, "batch_size": 32, "eval_every": 10, "seeds": [0]},
        search={"learning_rate": {"min": 1e-3, "max": 1.0, "num": 3}, "optimizer": ["adam"]},
        resources={"max_failures": 1},
    )
    # The lane width comes from this host's measurement (1, where the default rule gives 3):
    # the driver compiles for it, and both trial processes read it.
    cache = tmp_path / "compile-cache"
    _host_chose(cache, spec, width=1)
    sweep, marker = tmp_path / "sweep", tmp_path / "crashed"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    hook = tmp_path / "crash_hook.py"  # the trial hook kills the worker once, at step 20
    hook.write_text(
        "import os, pathlib\n"
        "def crash(population_id, step):\n"
        f"    marker = pathlib.Path({str(marker)!r})\n"
        "    if step >= 20 and not marker.exists():\n"
        "        marker.write_text(str(os.getpid()))\n"
        "        os._exit(3)  # like a killed worker: no exception, no clean-up\n"
    )
    env = _env(
        MLFLOW_TRACKING_URI=uri,
        GOLDILOCKS_TRIAL_HOOK=f"{hook}:crash",
        GOLDILOCKS_CHECKPOINT_EVERY_S="0",
        GOLDILOCKS_COMPILE_CACHE=str(cache),
        # Each trial trains in its own worker (the compile-ahead's case; the warm trainer,
        # which compiles for itself, has its killed-trial test in test_warm_trainer.py).
        GOLDILOCKS_WARM_TRAINER="false",
    )
    env.pop("GOLDILOCKS_CPU_LANE_WIDTH", None)
    proc = subprocess.run(
        [*GOLDILOCKS, "run", str(spec), "--out", str(sweep), "--executor", "ray"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker.exists(), "the worker was never killed"
    steps = [p["eval_step"] for p in sweep_points(sweep)]
    # Resumed, not restarted: every eval point arrived exactly once, none replayed from 0.
    assert steps == [0, 10, 20, 30, 40]
    _assert_one_complete_run_per_lane(uri, sweep, 40)
    # Both worker processes, the first and the retry, ran the driver's compiled programs, at
    # the width this host measured.
    assert {p["compiles"] for p in sweep_points(sweep)} == {0}
    assert {p["width"] for p in sweep_points(sweep)} == {1}
    report = json.loads((sweep / "report.json").read_text())
    assert report["timing"]["tune_s"] == 0.0  # nothing measured again
    assert report["timing"]["lane_width_choice"]["adam-constant"]["source"] == "cache"
    assert "os.fork()" not in proc.stderr  # JAX's fork warning: Ray forks, then execs


def test_an_interrupted_sweep_resumes_without_duplicate_or_stale_runs(tmp_path):
    # An eval (and a checkpoint) every 4 steps: 100 round trips to the driver keep the second
    # trial training for seconds, even with its programs compiled ahead, so the SIGTERM
    # below lands while it trains, not after the sweep is done.
    spec = _spec_file(
        tmp_path,
        train={"steps": 400, "batch_size": 32, "eval_every": 4, "seeds": [0]},
        search={"learning_rate": {"min": 1e-3, "max": 1.0, "num": 3}, "optimizer": ["sgd", "adam"]},
        resources={"max_concurrent_trials": 1},
    )
    sweep = tmp_path / "sweep"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = _env(MLFLOW_TRACKING_URI=uri, GOLDILOCKS_CHECKPOINT_EVERY_S="0")
    proc = subprocess.Popen(
        [*GOLDILOCKS, "run", str(spec), "--out", str(sweep), "--executor", "ray"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        progress = sweep / "progress.json"
        # Interrupt once the first population has finished and the second is training: resume
        # must keep the finished trial's results and restore only the other.
        # (the sweep fits this host: one trial trains both populations, one after the other)
        p = json.loads(progress.read_text()) if progress.exists() else {}
        if p.get("lane_steps_total") and p["lane_steps_done"] > p["lane_steps_total"] / 2:
            break
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-3000:]
    assert json.loads((sweep / "sweep.json").read_text())["status"] == "interrupted"
    parent, children = _lane_runs(uri, sweep)
    assert parent.info.status == "KILLED"
    assert children and all(r.info.status == "KILLED" for r in children)

    resumed = subprocess.run(
        [*GOLDILOCKS, "resume", str(sweep)], env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((sweep / "sweep.json").read_text())["status"] == "succeeded"
    _assert_one_complete_run_per_lane(uri, sweep, 400)


def test_starting_ray_keeps_the_callers_sigterm_handler():
    # ray.init installs sys.exit(15) for SIGTERM; a cancel landing outside Tuner.fit must still
    # reach the CLI's handler and end the sweep "interrupted" (exit 130), not "failed" (15).
    script = """
import signal, ray
from conftest import tiny_spec_dict
from sweeps.spec import parse_spec
from sweeps.exec.raytune.cluster import init_ray

def mine(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, mine)
init_ray(parse_spec(tiny_spec_dict()))
kept = signal.getsignal(signal.SIGTERM) is mine
ray.shutdown()
print("kept" if kept else "replaced")
"""
    env = _env()
    env["PYTHONPATH"] += ":" + str(Path(__file__).resolve().parents[2])  # for conftest
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "kept"
