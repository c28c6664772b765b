"""Refinement rounds through the whole pipeline, inline: the report's precision fields, one
MLflow child run per lane tagged with its round, every seed at a refined LR, and a sweep cut
in a later round resumed from plan.json to the same lanes."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_spec_dict
from mlflow.tracking import MlflowClient

import sweeps.exec.inline as inline
from sweeps.errors import SweepInterrupted
from sweeps.pipeline import load_for_resume, prepare, run_sweep
from sweeps.spec import parse_spec


def refined_spec():
    return parse_spec(
        tiny_spec_dict(
            train={"steps": 30, "batch_size": 32, "eval_every": 10, "seeds": [0, 1]},
            search={
                "learning_rate": {"min": 1e-3, "max": 100.0, "num": 6},
                "optimizer": ["sgd"],
                "refine": {"ratio": 1.5, "max_rounds": 3},
            },
        )
    )


def lanes_of(report):
    return sorted((lane["learning_rate"], lane["seed"], lane["round"]) for lane in report["lanes"])


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refine")
    uri = f"sqlite:///{tmp}/mlflow.db"
    report = run_sweep(prepare(refined_spec()), tmp / "sweep", executor="inline", tracking_uri=uri)
    return report, uri, tmp / "sweep"


def test_the_report_says_how_precise_and_at_what_cost(tracked):
    report, _, folder = tracked
    (g,) = report["groups"]
    assert g["rounds"] > 1
    assert g["edge_ratio"] == pytest.approx(g["min_diverged_lr"] / g["max_undiverged_lr"])
    assert g["edge_ratio"] < 10**0.8  # finer than the grid's step
    low, high = g["best_lr_bracket"]
    assert low <= g["best_lr"] <= high
    rounds = {lane["round"] for lane in report["lanes"]}
    assert rounds == set(range(1, g["rounds"] + 1))
    assert all(lane["pruned_at_step"] is None for lane in report["lanes"])
    by_lr: dict[float, set[int]] = {}
    for lane in report["lanes"]:
        by_lr.setdefault(lane["learning_rate"], set()).add(lane["seed"])
    assert all(seeds == {0, 1} for seeds in by_lr.values())  # every LR on every seed
    t = report["timing"]
    assert t["lane_steps"] == len(report["lanes"]) * 30
    assert t["lane_steps_dense"] >= t["lane_steps"]
    verdict = (folder / "verdict.md").read_text()
    # the console's columns: the edge bracket, the best LR's bracket, the rounds
    assert "| edge | best LR within | rounds |" in verdict
    assert f"(×{g['edge_ratio']:.2f}) | " in verdict and f" | {g['rounds']} | " in verdict
    plan = json.loads((folder / "plan.json").read_text())
    assert len(plan["populations"]) == len({lane["trial_id"] for lane in report["lanes"]})


def test_one_child_run_per_lane_tagged_with_its_round(tracked):
    report, uri, _ = tracked
    client = MlflowClient(uri)
    for lane in report["lanes"]:
        run = client.get_run(lane["run_id"])
        assert run.data.tags["goldilocks.round"] == str(lane["round"])
        assert run.info.status == "FINISHED"
    assert len({lane["run_id"] for lane in report["lanes"]}) == len(report["lanes"])


def test_a_sweep_cut_in_a_later_round_resumes_to_the_same_lanes(tracked, tmp_path, monkeypatch):
    report, _, _ = tracked
    real = inline.run_trial
    cut = {"done": False}

    def stop_in_round_2(spec, pop, data, **kw):
        if pop.lanes[0].round == 2 and not cut["done"]:
            cut["done"] = True
            raise SweepInterrupted("cut in round 2")
        return real(spec, pop, data, **kw)

    monkeypatch.setattr(inline, "run_trial", stop_in_round_2)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    folder = tmp_path / "sweep"
    with pytest.raises(SweepInterrupted):
        run_sweep(prepare(refined_spec()), folder, executor="inline", tracking_uri=uri)
    saved = json.loads((folder / "plan.json").read_text())
    assert saved["round"] == 2
    prepared, _ = load_for_resume(folder)
    resumed = run_sweep(prepared, folder, executor="inline", tracking_uri=uri, resume=True)
    assert lanes_of(resumed) == lanes_of(report)
    assert [g["best_lr"] for g in resumed["groups"]] == [g["best_lr"] for g in report["groups"]]


def test_the_plot_marks_the_refined_lrs_and_the_edge_bracket(tracked):
    from sweeps.verdict.plots import goldilocks_figure

    report, _, folder = tracked
    fig = goldilocks_figure(report)
    marks = [a for ax in fig.axes for a in ax.get_lines() if a.get_gid() == "refined"]
    refined = {lane["learning_rate"] for lane in report["lanes"] if lane["round"] > 1}
    assert len(marks) == 1 and set(marks[0].get_xdata()) == refined
    titles = " ".join(ax.get_title(loc="right") for ax in fig.axes)
    assert f"(×{report['groups'][0]['edge_ratio']:.2f})" in titles
    assert (folder / "plots" / "goldilocks.png").exists()
