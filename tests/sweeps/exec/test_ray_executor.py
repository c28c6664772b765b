"""Sweeps as Ray Tune trials on a real local Ray: same answers as inline, one trial per population."""

from __future__ import annotations

import os

import numpy as np
from conftest import tiny_spec_dict
from mlflow.tracking import MlflowClient
from testlib import sweep_points

from sweeps.exec.inline import train_inline
from sweeps.pipeline import prepare, run_sweep
from sweeps.spec import parse_spec


def test_local_ray_starts_no_idle_workers(local_ray):
    """Ray's idle workers for the first driver are never used by Tune's trial actors (their
    runtime env differs): on a small machine they would only take CPU from the trials."""
    import time

    import psutil
    import ray

    time.sleep(2)  # Ray would have started them when this driver connected
    raylet = next(
        p for p in psutil.process_iter(["cmdline"]) if "raylet" in " ".join(p.info["cmdline"] or [])
    )
    workers = [" ".join(p.cmdline()) for p in raylet.children(recursive=True)]
    assert ray.is_initialized()
    assert not [w for w in workers if w.startswith("ray::IDLE")], workers


def _spec(**search):
    return parse_spec(
        tiny_spec_dict(
            search={
                "learning_rate": {"min": 1e-3, "max": 10.0, "num": 5},
                "optimizer": ["sgd", "adam"],
                **search,
            }
        )
    )


def test_ray_sweep_matches_inline_and_logs_every_lane(local_ray, tmp_path):
    spec = _spec()
    prepared = prepare(spec)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    report = run_sweep(prepared, tmp_path / "sweep", executor="ray", tracking_uri=uri)

    assert report["executor"] == "ray"
    assert len(report["lanes"]) == 10
    # Each Ray trial trained one whole population: trial ids are the planned populations.
    assert {lane["trial_id"] for lane in report["lanes"]} == {p.id for p in prepared.populations}
    points = sweep_points(tmp_path / "sweep")
    assert {p["population_id"] for p in points} == {p.id for p in prepared.populations}
    assert all(len(p["lane_indices"]) == 5 for p in points)
    # The sweep fits this host: ONE Ray trial trained both populations, one after the other,
    # each on every CPU of the sweep's two slots (cluster.one_trial_per_host).
    trials = [d for d in (tmp_path / "sweep" / "ray" / "tune").iterdir() if d.is_dir()]
    assert len(trials) == 1, trials
    choices = report["timing"]["lane_width_choice"].values()
    assert {c["threads"] for c in choices} == {min(2, os.cpu_count())}
    # Ray was up already (this module's): nothing to compile ahead behind, so the warm
    # trainer compiled the programs (test_precompile and test_ray_faults: the compile-ahead)
    assert sum(p["compiles"] for p in points) > 0
    assert report["timing"]["compile_s"] > 0  # the trials' compile counted

    # Same numbers as the inline executor (same program, same batches, same seeds).
    inline = train_inline(spec, prepared.data)
    ray_loss = [lane["best_val_loss"] for lane in report["lanes"]]
    inline_loss = [r.best_val_loss for r in inline]
    np.testing.assert_allclose(
        np.nan_to_num(ray_loss, nan=np.inf), np.nan_to_num(inline_loss, nan=np.inf), rtol=1e-5
    )

    client = MlflowClient(uri)
    parent = client.get_run(report["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED"
    for lane in report["lanes"]:
        run = client.get_run(lane["run_id"])
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["status"] == lane["status"]
        assert run.info.status == "FINISHED"  # diverged lanes too: a result, not a failure
        history = client.get_metric_history(lane["run_id"], "val_loss")
        steps = [m.step for m in history]
        assert len(steps) == len(set(steps)) and max(steps) == spec.train.steps


def test_a_lone_trial_trains_on_the_cpu_its_sweep_leaves_idle(local_ray, tmp_path):
    """One population, two trial slots of one CPU: the trial trains its two slices side by
    side (sweeps/exec/trial.py: trial_threads), and its numbers are the inline ones."""
    import os

    spec = parse_spec(
        tiny_spec_dict(
            search={"learning_rate": {"min": 1e-3, "max": 1.0, "num": 10}, "optimizer": ["adam"]}
        )
    )
    prepared = prepare(spec)
    report = run_sweep(prepared, tmp_path / "sweep", executor="ray", track=False)
    timing = report["timing"]
    (pid,) = timing["lane_threads"]
    assert timing["lane_width"][pid] == 5  # 10 lanes at the tests' cap of 8: two slices
    assert timing["lane_threads"][pid] == min(2, os.cpu_count())
    assert timing["lane_width_choice"]["adam-constant"]["threads"] == min(2, os.cpu_count())
    inline = train_inline(spec, prepared.data)
    np.testing.assert_array_equal(
        [lane["best_val_loss"] for lane in report["lanes"]], [r.best_val_loss for r in inline]
    )


def test_random_search_samples_are_grouped_into_populations(local_ray, tmp_path):
    spec = _spec(method="random", num_samples=8, seed=3)
    prepared = prepare(spec)
    report = run_sweep(prepared, tmp_path / "sweep", executor="ray", track=False)
    lrs = [lane["learning_rate"] for lane in report["lanes"]]
    assert len(lrs) == 8 and len(set(lrs)) == 8 and all(1e-3 <= lr <= 10 for lr in lrs)
    # Two optimizer families at most: at most two trials for eight points.
    assert len({lane["trial_id"] for lane in report["lanes"]}) <= 2


def test_tpe_trains_each_point_over_all_seeds(local_ray, tmp_path):
    spec = parse_spec(
        tiny_spec_dict(
            train={"steps": 20, "batch_size": 32, "eval_every": 10, "seeds": [0, 1]},
            search={
                "method": "tpe",
                "num_samples": 4,
                "learning_rate": {"min": 1e-3, "max": 1.0},
                "optimizer": ["adam"],
            },
            resources={"max_concurrent_trials": 2},
        )
    )
    report = run_sweep(prepare(spec), tmp_path / "sweep", executor="ray", track=False)
    lanes = report["lanes"]
    assert len(lanes) == 8
    by_trial: dict[str, list] = {}
    for lane in lanes:
        by_trial.setdefault(lane["trial_id"], []).append(lane)
    assert len(by_trial) == 4
    for members in by_trial.values():
        assert sorted(m["seed"] for m in members) == [0, 1]
        assert len({m["learning_rate"] for m in members}) == 1


def test_asha_stops_bad_populations_early_without_nan_scores(local_ray, tmp_path):
    spec = parse_spec(
        tiny_spec_dict(
            train={"steps": 60, "batch_size": 32, "eval_every": 10, "seeds": [0]},
            search={
                "learning_rate": {"min": 1e-4, "max": 1.0, "num": 3},
                "optimizer": ["sgd", "adam", "momentum", "rmsprop"],
            },
            scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
            resources={"max_concurrent_trials": 1},
        )
    )
    report = run_sweep(prepare(spec), tmp_path / "sweep", executor="ray", track=False)
    points = sweep_points(tmp_path / "sweep")
    last_step = {}
    for p in points:
        last_step[p["population_id"]] = max(last_step.get(p["population_id"], 0), p["eval_step"])
    assert max(last_step.values()) == 60
    assert min(last_step.values()) < 60  # ASHA cut at least one population short
    assert report["winner"] is not None


def test_a_trial_of_several_populations_resumes_at_the_one_its_checkpoint_names():
    from sweeps.exec.raytune.points import finished_before as _finished_before

    planned = prepare(_spec()).populations
    ids = [p.id for p in planned]
    assert _finished_before(None, planned, 30) == 0
    assert _finished_before({"population": ids[0], "step": 10}, planned, 30) == 0
    assert _finished_before({"population": ids[0], "step": 30}, planned, 30) == 1
    assert _finished_before({"population": ids[1], "step": 30}, planned, 30) == 2
    assert _finished_before({"step": 30}, planned, 30) == 1  # a one-population checkpoint
