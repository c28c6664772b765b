"""The warm trainer a kept Ray head holds (sweeps/exec/raytune/warm.py), on a real local Ray:
sweep after sweep it trains the trials' populations with the same numbers as inline, compiles
each program once, keeps the trial processes free of JAX, and a trainer that dies mid-trial
is replaced by Tune's retry without losing a point."""

from __future__ import annotations

import json

import numpy as np
from conftest import tiny_spec_dict
from testlib import sweep_points

from sweeps.exec.inline import train_inline
from sweeps.pipeline import prepare, run_sweep
from sweeps.settings import Settings
from sweeps.spec import parse_spec

HOOK = '''
import json, os, sys
def note(population, step):
    """In the trial: does this process hold JAX? Kill the warm trainer once, if asked."""
    with open({log!r}, "a") as f:
        f.write(json.dumps({{"pid": os.getpid(), "jax": "jax" in sys.modules, "step": step}}) + "\\n")
    if {kill!r} and step == 20 and not os.path.exists({marker!r}):
        open({marker!r}, "w").close()
        if {kill!r} == "trial":
            os._exit(3)  # like a killed trial worker: no exception, no clean-up
        import ray
        from sweeps.exec.raytune.warm import NAMESPACE
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["namespace"] == NAMESPACE:
                ray.kill(ray.get_actor(actor["name"], namespace=NAMESPACE))
'''


def _settings(tmp_path, name: str, kill: str | None = None) -> Settings:
    """`kill`: "trainer" or "trial" once at step 20 (in the trial, by its hook), else None."""
    hook = tmp_path / f"{name}_hook.py"
    log, marker = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.killed"
    hook.write_text(HOOK.format(log=str(log), kill=kill, marker=str(marker)))
    return Settings(trial_hook=f"{hook}:note", checkpoint_every_s=0.0)


def _spec():
    return parse_spec(
        tiny_spec_dict(
            search={
                "learning_rate": {"min": 1e-3, "max": 10.0, "num": 5},
                "optimizer": ["sgd", "adam"],
            }
        )  # fmt: skip
    )


def _trainers():
    import ray

    from sweeps.exec.raytune.warm import NAMESPACE

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == NAMESPACE]  # fmt: skip
    return {n: ray.get(ray.get_actor(n, namespace=NAMESPACE).pid.remote()) for n in names}


def _hook_log(tmp_path, name: str) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]


def test_warm_trainer_serves_sweep_after_sweep(local_ray, tmp_path):
    spec = _spec()
    inline = [r.best_val_loss for r in train_inline(spec, prepare(spec).data)]
    reports = []
    for name in ("first", "second"):
        reports.append(run_sweep(prepare(spec), tmp_path / name, executor="ray", track=False,
                                 settings=_settings(tmp_path, name)))  # fmt: skip
        trainers = _trainers()
        assert len(trainers) == 1, trainers  # one trainer for one trial environment, kept
        if name == "first":
            pid = next(iter(trainers.values()))
        assert next(iter(trainers.values())) == pid  # the same process served both sweeps
        # the trial only reported: its process never imported JAX
        log = _hook_log(tmp_path, name)
        assert log and not any(row["jax"] for row in log), log
        assert pid not in {row["pid"] for row in log}

    for report in reports:  # the same numbers as inline
        loss = [lane["best_val_loss"] for lane in report["lanes"]]
        np.testing.assert_allclose(
            np.nan_to_num(loss, nan=np.inf), np.nan_to_num(inline, nan=np.inf), rtol=1e-5
        )
    # the second sweep found every program compiled in the trainer's memory
    assert {p["compiles"] for p in sweep_points(tmp_path / "second")} == {0}


def test_a_warm_trainer_killed_mid_trial_is_replaced_by_the_retry(local_ray, tmp_path):
    spec = _spec()
    prepared = prepare(spec)
    before = _trainers()
    report = run_sweep(prepared, tmp_path / "sweep", executor="ray", track=False,
                       settings=_settings(tmp_path, "faulty", kill="trainer"))  # fmt: skip
    assert (tmp_path / "faulty.killed").exists()
    after = _trainers()
    assert len(after) == 1 and set(after.values()).isdisjoint(before.values())  # a new one
    # the retried trial resumed from its checkpoint: every lane finished, as inline trains it
    inline = [r.best_val_loss for r in train_inline(spec, prepared.data)]
    loss = [lane["best_val_loss"] for lane in report["lanes"]]
    np.testing.assert_allclose(
        np.nan_to_num(loss, nan=np.inf), np.nan_to_num(inline, nan=np.inf), rtol=1e-5
    )
    points = sweep_points(tmp_path / "sweep")
    for population in prepared.populations:
        steps = {p["eval_step"] for p in points if p["population_id"] == population.id}
        assert steps == {0, 10, 20, 30, 40}, (population.id, steps)


def test_a_trial_killed_mid_stream_is_retried_by_the_same_warm_trainer(local_ray, tmp_path):
    """The trial dies while the trainer streams to it: the trainer stops that stream and
    serves the retry, which resumes from the checkpoint (no deadlock behind the dead one)."""
    spec = _spec()
    prepared = prepare(spec)
    report = run_sweep(prepared, tmp_path / "sweep", executor="ray", track=False,
                       settings=_settings(tmp_path, "crash", kill="trial"))  # fmt: skip
    assert (tmp_path / "crash.killed").exists()
    assert len({row["pid"] for row in _hook_log(tmp_path, "crash")}) == 2  # the trial, its retry
    inline = [r.best_val_loss for r in train_inline(spec, prepared.data)]
    loss = [lane["best_val_loss"] for lane in report["lanes"]]
    np.testing.assert_allclose(
        np.nan_to_num(loss, nan=np.inf), np.nan_to_num(inline, nan=np.inf), rtol=1e-5
    )
    first = prepared.populations[0].id
    steps = [
        p["eval_step"] for p in sweep_points(tmp_path / "sweep") if p["population_id"] == first
    ]
    assert steps == [0, 10, 20, 30, 40]  # resumed, not restarted: no point arrived twice
