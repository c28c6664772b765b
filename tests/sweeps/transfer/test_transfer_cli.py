"""transfer.steps end to end through the CLI (inline): report.json["transfer"], the table in the
console and verdict.md, transfer.png, and the horizons' lanes stopped at their own horizon."""

from __future__ import annotations

import json

import yaml
from conftest import tiny_spec_dict
from typer.testing import CliRunner

from sweeps.cli import app


def _run(tmp_path, raw: dict):
    """`goldilocks run` inline on this spec: (the CLI's result, the folder, report.json)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--executor", "inline"])
    assert result.exit_code == 0, result.output
    return result, out, json.loads((out / "report.json").read_text())


def test_a_tiny_transfer_sweep_reports_points_fit_prediction_and_verification(tmp_path):
    raw = tiny_spec_dict(
        name="transfer-tiny",
        data={"name": "teacher", "n_samples": 600},
        train={"batch_size": 32, "eval_every": 20, "seeds": [0, 1]},
        transfer={"steps": {"values": [20, 40, 80], "target": 120}, "verify": True},
    )
    raw["search"] = {**raw["search"], "optimizer": ["adam"],
                     "learning_rate": {"min": 3e-3, "max": 0.2, "num": 7}, "schedule": ["cosine"]}  # fmt: skip
    result, out, report = _run(tmp_path, raw)

    # every lane's history ends at its own horizon; train.steps is the target (verify)
    for lane in report["lanes"]:
        assert lane["history"]["step"][-1] == lane["schedule_args"]["horizon"]
    assert {lane["schedule_args"]["horizon"] for lane in report["lanes"]} == {20, 40, 80, 120}

    section = report["transfer"]["steps"]
    assert section["values"] == [20, 40, 80] and section["target"] == 120
    (group,) = section["groups"]
    assert [p["value"] for p in group["points"]] == [20, 40, 80]
    for p in group["points"]:
        assert p["bracket"][0] <= p["best_lr"] <= p["bracket"][1]
    pred = group["prediction"]
    lo, hi = pred["interval"]
    assert lo <= pred["best_lr"] <= hi and isinstance(pred["reliable"], bool) and pred["note"]
    # three horizons: every LR's loss curve predicts, but cannot check itself (it needs four)
    curves = pred["loss_curves"]
    assert pred["method"] == "loss_curves" and not pred["reliable"]
    assert curves["held_out_error"] is None and curves["alpha"] > 0
    assert "loss curves cannot be checked" in pred["note"]
    assert curves["learning_rates"][0] <= pred["best_lr"] <= curves["learning_rates"][-1]
    assert len(curves["predicted_loss"]) == len(curves["learning_rates"]) >= 3
    check = group["verification"]
    assert check["best_lr"] > 0
    assert abs(check["prediction_error"]) < 10 and check["within"] == (
        abs(check["prediction_error"]) <= 0.5
    )

    output = " ".join(result.stdout.split())
    assert "Transfer — the best LR at the target" in output
    assert f"transfer: adam · cosine: {pred['note']}" in output
    md = (out / "verdict.md").read_text()
    assert "## Transfer — the best LR at the target" in md and "cosine · 40 steps" in md
    assert (out / "plots" / "transfer.png").stat().st_size > 10_000

    from sweeps.verdict.plots import transfer_figure

    gids = {a.get_gid() for a in transfer_figure(report).findobj() if a.get_gid()}
    assert {"fit", "fit_extended", "prediction", "direct", "target", "band"} <= gids


def test_a_tiny_batch_size_sweep_reports_the_batch_axis(tmp_path):
    raw = tiny_spec_dict(
        name="transfer-batch",
        train={"steps": 20, "eval_every": 10, "seeds": [0]},
        transfer={"batch_size": {"values": [8, 16], "target": 32}, "verify": True},
    )
    raw["search"] = {**raw["search"], "optimizer": ["sgd"],
                     "learning_rate": {"min": 1e-2, "max": 10.0, "num": 7}}  # fmt: skip
    result, out, report = _run(tmp_path, raw)
    assert {g["batch_size"] for g in report["groups"]} == {8, 16, 32}
    assert {lane["batch_size"] for lane in report["lanes"]} == {8, 16, 32}
    (group,) = report["transfer"]["batch_size"]["groups"]
    assert [p["value"] for p in group["points"]] == [8, 16]
    assert group["verification"]["value"] == 32
    assert "the square-root rule" in group["prediction"]["note"]
    scale = report["transfer"]["batch_size"]["noise_scale"]
    assert scale["small"] == 8 and scale["big"] == 32 and scale["b_simple"] > 0
    # measured along a lane at the best LR of the largest swept batch, at 0, T/4, T/2, T
    best = next(g for g in report["groups"] if g["batch_size"] == 16)
    assert scale["at"] == "best_lr" and scale["learning_rate"] == best["best_lr"]
    assert scale["steps"] == [0, 10, 20] and scale["step"] == 20
    assert "batches beyond ~" in group["prediction"]["note"]
    assert (
        "cosine · batch 16" in (out / "verdict.md").read_text()
        or "constant · batch 16" in (out / "verdict.md").read_text()
    )
    assert (out / "plots" / "transfer_batch_size.png").exists()


def test_a_tiny_width_sweep_trains_one_population_per_model_width(tmp_path):
    import shutil
    from pathlib import Path

    nets = Path(__file__).resolve().parents[3] / "examples" / "own_model" / "nets.py"
    shutil.copy(nets, tmp_path / "nets.py")
    raw = tiny_spec_dict(
        name="transfer-width",
        model={"import": "nets.py:WideAndDeep", "args": {"dropout": 0.0}},
        train={"steps": 20, "batch_size": 32, "eval_every": 10, "seeds": [0]},
        transfer={"width": {"arg": "width", "values": [8, 16], "target": 32}, "verify": True},
    )
    raw["search"] = {**raw["search"], "optimizer": ["adam"],
                     "learning_rate": {"min": 1e-3, "max": 1.0, "num": 5}}  # fmt: skip
    result, out, report = _run(tmp_path, raw)
    assert {g["model_width"] for g in report["groups"]} == {8, 16, 32}
    (group,) = report["transfer"]["width"]["groups"]
    assert [p["value"] for p in group["points"]] == [8, 16]
    assert group["verification"]["value"] == 32
    assert "width 16" in (out / "verdict.md").read_text()
    assert (out / "plots" / "transfer_width.png").exists()
