"""The user's own model, loss, metrics and data (issue: bring your own Flax model).

Through `goldilocks validate` / `run` (exit 2 naming the field, nothing created) and through
the Python API from objects defined here. The Ray and two-node cases live in
tests/sweeps/exec/test_ray_faults.py; the service's in tests/service/.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from conftest import tiny_spec_dict
from flax import nnx
from typer.testing import CliRunner
from user_files import write_user_files

import sweeps
from sweeps.cli import app

runner = CliRunner()
TRAIN = {"steps": 30, "batch_size": 32, "eval_every": 10, "seeds": [0]}
SEARCH = {"learning_rate": {"min": 1e-3, "max": 1.0, "num": 3}, "optimizer": ["adam"]}


def _spec(folder: Path, **overrides) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec_dict(train=TRAIN, search=SEARCH, **overrides)))
    return path


BAD = [
    pytest.param({"model": {"import": "nets.py:Nope"}}, "model.import", "has no 'Nope'", id="name"),
    pytest.param({"model": {"import": "gone.py:Net"}}, "model.import", "file not found", id="file"),
    pytest.param(
        {"model": {"import": "nets.py:Net", "args": {"widht": 3}}},
        "model.import",
        "unknown argument(s) widht",
        id="args",
    ),  # fmt: skip
    pytest.param(
        {"model": {"import": "nets.py:Wrong"}}, "model", "takes (2, 3)", id="output-shape"
    ),
    pytest.param(
        {"model": {"import": "nets.py:Raises"}}, "model", "fails on a batch of shape", id="raises"
    ),
    pytest.param(
        {"model": {"import": "nets.py:Net"}, "loss": {"import": "nets.py:per_example"}},
        "loss.import",
        "must return a scalar",
        id="loss-not-scalar",
    ),  # fmt: skip
    pytest.param(
        {
            "model": {"import": "nets.py:Net"},
            "metrics": {"import": "nets.py:accuracy", "metric": "f1"},
        },
        "metrics.metric",
        "'f1' is not among the metrics returned (acc)",
        id="metric-name",
    ),  # fmt: skip
    pytest.param(
        {"model": {"name": "mypkg.nets:MyNet"}}, "model", "model.import", id="name-not-import"
    ),
    pytest.param({"loss": "focal"}, "loss", "{import: 'losses.py:my_loss'}", id="loss-name"),
]


@pytest.mark.parametrize(("overrides", "field", "phrase"), BAD)
def test_bad_user_code_exits_2_naming_the_field(tmp_path, overrides, field, phrase):
    write_user_files(tmp_path)
    spec = _spec(tmp_path, **overrides)
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(spec), "--out", str(out), "--executor", "inline"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"{field}:" in text and phrase in text, text
    assert not out.exists()  # nothing created


def test_validate_finds_the_file_beside_the_spec_from_anywhere(tmp_path, monkeypatch):
    write_user_files(tmp_path / "project")
    spec = _spec(tmp_path / "project", model={"import": "nets.py:Net"})
    monkeypatch.chdir(tmp_path)  # another working directory
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert "3 lanes" in result.output


# ----------------------------------------------------------------------- the Python API
class TinyNet(nnx.Module):
    """Defined in this test module: handed to the API as an object."""

    def __init__(self, *, n_features: int, n_outputs: int, rngs: nnx.Rngs, width: int = 8):
        self.a = nnx.Linear(n_features, width, rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.b = nnx.Linear(width, n_outputs, rngs=rngs)

    def __call__(self, x):
        return self.b(nnx.relu(self.bn(self.a(x))))


def squared_hinge(pred, y):
    """A loss no built-in has: multiclass squared hinge."""
    onehot = jnp.eye(pred.shape[-1])[y]
    margin = jnp.maximum(0.0, 1.0 - (2 * onehot - 1) * pred)
    return jnp.mean(jnp.sum(margin**2, axis=-1))


def top1(pred, y):
    return {"top1": jnp.mean(jnp.argmax(pred, -1) == y)}


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 5)) * 3
    y = rng.integers(0, 3, 300)
    return {"x": (centers[y] + rng.normal(size=(300, 5))).astype(np.float32), "y": y}


def test_python_api_from_objects(tmp_path, blobs):
    report = sweeps.run_sweep(
        {"name": "objects", "train": TRAIN, "search": SEARCH},
        tmp_path / "sweep",
        model=TinyNet,
        loss=squared_hinge,
        metrics=top1,
        metric="top1",
        data=blobs,
        executor="inline",
        track=False,
    )
    assert isinstance(report, sweeps.Report)
    assert report["metric"] == "top1"
    assert [g["loss"] for g in report["groups"]] == ["squared_hinge"]
    assert report.winner["val_metric"] > 0.9  # separable blobs: the model trained
    assert "| adam | constant |" in report.table
    assert {p.name for p in report.plots} >= {"goldilocks.png", "training_curves.png"}


def test_python_api_matches_the_same_model_given_by_file(tmp_path, blobs):
    """An object and a file holding the same class train identically (same lanes, same
    numbers): the API is the CLI's pipeline, not a second trainer."""
    np.savez(tmp_path / "blobs.npz", **blobs)
    (tmp_path / "tiny.py").write_text("from flax import nnx\n" + _source_of(TinyNet) + "\n")
    common = {"name": "same", "train": TRAIN, "search": SEARCH, "loss": "cross_entropy"}
    by_object = sweeps.run_sweep(
        common, tmp_path / "a", model=TinyNet, data=blobs, executor="inline", track=False
    )
    by_file = sweeps.run_sweep(
        {**common, "model": {"import": "tiny.py:TinyNet"}, "data": {"path": "blobs.npz"}},
        tmp_path / "b",
        base_dir=tmp_path,
        executor="inline",
        track=False,
    )
    losses = lambda r: [lane["best_val_loss"] for lane in r["lanes"]]  # noqa: E731
    np.testing.assert_allclose(losses(by_object), losses(by_file), rtol=1e-6)


def _source_of(cls) -> str:
    import inspect

    return inspect.getsource(cls)


def test_objects_cannot_go_with_a_prepared_sweep(tmp_path):
    prepared = sweeps.prepare(sweeps.parse_spec(tiny_spec_dict(train=TRAIN, search=SEARCH)))
    with pytest.raises(ValueError, match="objects go with a spec"):
        sweeps.run_sweep(prepared, tmp_path, model=TinyNet)
