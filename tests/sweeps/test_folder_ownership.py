"""A sweep folder belongs to one sweep: another spec into it is refused (exit 2, nothing
touched), --overwrite starts new MLflow runs and leaves the old ones as they were; the Python
API's default folder is new on every call; lr-find resolves the spec like `run`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import tiny_spec_dict
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from sweeps import folder as files
from sweeps.cli import app


def _spec(folder: Path, name: str, lr_min: float, lr_max: float) -> Path:
    raw = tiny_spec_dict(name="owned", model={"name": "mlp", "hidden": [8]})
    raw["train"].update(steps=20, eval_every=10)
    raw["search"].update(
        optimizer=["adam"], learning_rate={"min": lr_min, "max": lr_max, "num": 3, "scale": "log"}
    )
    path = folder / name
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(*args: str):
    return CliRunner().invoke(app, ["run", *args, "--executor", "inline"])


def _lane_params(report: dict) -> dict[str, tuple[float, str, str]]:
    """run id -> (the lane's learning rate, status, sweep id of its parent) as MLflow has them."""
    client = MlflowClient(report["mlflow"]["tracking_uri"])
    out = {}
    for lane in report["lanes"]:
        run = client.get_run(lane["run_id"])
        parent = client.get_run(run.data.tags["mlflow.parentRunId"])
        out[lane["run_id"]] = (
            float(run.data.params["learning_rate"]),
            run.data.tags.get("goldilocks.status") or run.data.params.get("status"),
            parent.data.tags["goldilocks.sweep_id"],
        )
    return out


def test_another_spec_into_a_folder_is_refused_and_overwrite_makes_new_runs(tmp_path):
    a = _spec(tmp_path, "a.yaml", 1e-3, 1e-1)
    b = _spec(tmp_path, "b.yaml", 1e-2, 1.0)
    out = tmp_path / "out"
    first = _run(str(a), "--out", str(out))
    assert first.exit_code == 0, first.output
    report_a = json.loads((out / files.REPORT).read_text())
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    runs_a = _lane_params(report_a)

    refused = _run(str(b), "--out", str(out))
    assert refused.exit_code == 2, refused.output
    text = " ".join(refused.output.split())
    assert "out:" in text and report_a["sweep_id"] in text and "--overwrite" in text
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

    again = _run(str(a), "--out", str(out))  # the same spec again is another sweep too
    assert again.exit_code == 2 and "of the same spec" in " ".join(again.output.split())

    second = _run(str(b), "--out", str(out), "--overwrite")
    assert second.exit_code == 0, second.output
    report_b = json.loads((out / files.REPORT).read_text())
    assert report_b["sweep_id"] != report_a["sweep_id"]
    runs_b = _lane_params(report_b)
    assert not set(runs_a) & set(runs_b)  # new runs, none reused by lane index
    for lane in report_b["lanes"]:
        lr, _, owner = runs_b[lane["run_id"]]
        assert lr == pytest.approx(lane["learning_rate"]) and owner == report_b["sweep_id"]
    assert _lane_params(report_a) == runs_a  # the first sweep's runs untouched
    for lane in report_a["lanes"]:
        assert runs_a[lane["run_id"]][0] == pytest.approx(lane["learning_rate"])
    state = json.loads((out / files.STATE).read_text())
    assert state["spec_hash"] == files.spec_fingerprint((out / files.SPEC).read_text())


def test_the_python_api_default_folder_is_new_per_call(tmp_path, monkeypatch):
    import sweeps

    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load(_spec(tmp_path, "a.yaml", 1e-3, 1e-1).read_text())
    one = sweeps.run_sweep(raw, executor="inline", track=False)
    raw["search"]["learning_rate"]["max"] = 1.0
    two = sweeps.run_sweep(raw, executor="inline", track=False)
    assert one.folder != two.folder and one.folder.parent == two.folder.parent == Path("runs")
    assert json.loads((one.folder / files.REPORT).read_text())["sweep_id"] == one["sweep_id"]
    lrs_one = sorted(lane["learning_rate"] for lane in one["lanes"])
    assert max(lrs_one) == pytest.approx(0.1)  # the first call's folder kept its own sweep


DECOY = """
from flax import nnx


class Net(nnx.Module):
    def __init__(self, *, n_features, n_outputs, rngs):
        raise RuntimeError("the decoy in the working directory was built")
"""

REAL = """
from flax import nnx


class Net(nnx.Module):
    def __init__(self, *, n_features, n_outputs, rngs):
        self.dense = nnx.Linear(n_features, n_outputs, rngs=rngs)

    def __call__(self, x):
        return self.dense(x)
"""


def test_lr_find_resolves_the_spec_from_its_own_folder(tmp_path, monkeypatch):
    spec_dir, elsewhere = tmp_path / "spec", tmp_path / "elsewhere"
    spec_dir.mkdir()
    elsewhere.mkdir()
    (spec_dir / "nets.py").write_text(REAL)
    (elsewhere / "nets.py").write_text(DECOY)
    raw = tiny_spec_dict(name="lrf", model={"import": "nets.py:Net"})
    raw["search"]["optimizer"] = ["adam"]
    (spec_dir / "spec.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "lrf"
    result = CliRunner().invoke(
        app, ["lr-find", str(spec_dir / "spec.yaml"), "--out", str(out), "--steps", "20"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "lr_find.json").read_text())
    assert os.getcwd() == str(elsewhere)
