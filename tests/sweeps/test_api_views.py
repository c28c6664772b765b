"""What a notebook sees of `sweeps.run_sweep`: a progress bar (off with progress=False), the
MLflow links at the end, and the report's groups, lanes and histories as pandas frames."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import tiny_spec_dict

import sweeps


@pytest.fixture(scope="module")
def spec():
    raw = tiny_spec_dict(name="frames")
    raw["train"].update(steps=20, eval_every=10)
    raw["search"]["learning_rate"] = {"min": 1e-3, "max": 1.0, "num": 3}
    return raw


def test_a_bar_while_it_runs_and_the_links_after(spec, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    seen = []
    report = sweeps.run_sweep(
        spec, tmp_path / "out", executor="inline", tracking_uri=uri, on_progress=seen.append
    )
    out = " ".join(capsys.readouterr().out.split())
    assert "100%" in out and "lane-steps" in out  # the bar, at its end
    assert f"tracking URI: {uri}" in out and "/runs?workflowType=machine_learning" in out
    assert seen and seen[-1].fraction == 1.0  # a caller's own callback still gets each update

    frame = report.lanes_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(report["lanes"]) == 6
    assert {"learning_rate", "optimizer", "status", "best_val_loss", "run_id"} <= set(frame)
    assert "history" not in frame
    lane = report["lanes"][4]
    row = frame.set_index("lane").loc[lane["lane"]]
    assert row["learning_rate"] == lane["learning_rate"] and row["status"] == lane["status"]

    groups = report.groups_frame()
    assert list(groups["optimizer"]) == [g["optimizer"] for g in report["groups"]]
    assert {"best_lr", "zone_low", "zone_high", "n_converged", "n_diverged"} <= set(groups)
    g = report["groups"][0]
    assert groups.loc[0, "n_converged"] == g["status_counts"]["converged"]
    assert groups.loc[0, "zone_low"] == (g["zone"] or {}).get("low")

    history = report.history_frame()
    assert len(history) == sum(len(lane["history"]["step"]) for lane in report["lanes"])
    assert {"lane", "step", "val_loss", "train_loss"} <= set(history)


def test_progress_false_prints_nothing(spec, tmp_path, capsys):
    sweeps.run_sweep(spec, tmp_path / "out", executor="inline", track=False, progress=False)
    assert capsys.readouterr().out == ""
