"""Models as Flax's own NNX docs write them, swept unchanged through `goldilocks validate` and
`run` (issue 22, item 3): the MNIST tutorial's CNN (call-time rngs), MiniGPT (sharding
annotations, reshard) and the ViT (a config dataclass), on tiny data; refusals exit 2 naming
the field. The model files are in tests/flax_tutorials.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_spec_dict
from flax_tutorials import MINIGPT_ARGS, VIT_ARGS, write_tutorials
from typer.testing import CliRunner

import sweeps
from sweeps.cli import app

runner = CliRunner()
TRAIN = {"steps": 12, "batch_size": 16, "eval_every": 6, "seeds": [0, 1]}
SEARCH = {"learning_rate": {"min": 1e-3, "max": 1e-2, "num": 2}, "optimizer": ["adam"]}
IMAGES = {"path": "digits.npz"}
TEXT = {"text": "corpus.txt", "block_size": 16}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tutorials(tmp_path_factory.mktemp("tutorials"))


def _spec(folder: Path, name: str, model: dict, data: dict, **overrides) -> Path:
    path = folder / f"{name}.yaml"
    spec = tiny_spec_dict(name=name, model=model, data=data, train=TRAIN, search=SEARCH)
    path.write_text(yaml.safe_dump({**spec, **overrides}))
    return path


TUTORIALS = [
    pytest.param("cnn", {"import": "cnn.py:CNN"}, IMAGES, id="mnist-cnn-call-time-rngs"),
    pytest.param(
        "gpt", {"import": "minigpt.py:MiniGPT", "args": MINIGPT_ARGS}, TEXT, id="minigpt-sharding"
    ),
    pytest.param(
        "vit",
        {"import": "vit.py:VisionTransformer", "args": VIT_ARGS},
        IMAGES,
        id="vit-config-dataclass",
    ),
]


@pytest.mark.slow  # compiling three models: ~30 s each on 2 busy cores
@pytest.mark.parametrize(("name", "model", "data"), TUTORIALS)
def test_tutorial_models_validate_and_train_unchanged(folder, name, model, data):
    spec = _spec(folder, name, model, data)
    checked = runner.invoke(app, ["validate", str(spec)])
    assert checked.exit_code == 0, checked.output
    out = folder / f"out-{name}"
    result = runner.invoke(app, ["run", str(spec), "--out", str(out), "--executor", "inline"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    lanes = report["lanes"]
    assert len(lanes) == 4
    losses = [lane["best_val_loss"] for lane in lanes]
    assert all(loss == loss and loss < 50 for loss in losses), losses  # finite: it trained
    # two seeds at one LR: their own initialisation and dropout keys, so other numbers
    by_lr = {}
    for lane in lanes:
        by_lr.setdefault(lane["learning_rate"], []).append(lane["best_val_loss"])
    assert all(len(set(v)) == 2 for v in by_lr.values()), by_lr


def test_call_time_dropout_is_reproducible_from_the_seeds(folder, tmp_path):
    """The same sweep twice trains the same numbers (keys from the lane seeds, nothing else)."""
    spec = _spec(folder, "flag", {"import": "cnn.py:Flagged"}, IMAGES)
    runs = [
        sweeps.run_sweep(spec, tmp_path / str(i), executor="inline", track=False) for i in range(2)
    ]
    first, second = ([lane["best_val_loss"] for lane in r["lanes"]] for r in runs)
    assert first == second


BAD = [
    pytest.param(
        {"import": "cnn.py:TwoHeads"},
        IMAGES,
        "model",
        "returns a tuple of 2 (array, array)",
        id="tuple-output-builtin-loss",
    ),  # fmt: skip
    pytest.param(
        {"import": "vit.py:VisionTransformer", "args": {"config": {"num_layerz": 1}}},
        IMAGES,
        "model.args.config.num_layerz",
        "unknown field",
        id="config-unknown-field",
    ),
    pytest.param(
        {"import": "vit.py:VisionTransformer", "args": {"config": {"hidden_size": "8"}}},
        IMAGES,
        "model.args.config.hidden_size",
        "expected int, got str",
        id="config-wrong-type",
    ),
    pytest.param(
        {"import": "vit.py:VisionTransformer", "args": {"config": {"img_size": 8}}},
        IMAGES,
        "model",
        "fails on a batch of shape (2, 8, 8, 1)",
        id="config-that-does-not-fit-the-data",
    ),
    pytest.param(
        {"import": "minigpt.py:MiniGPT", "args": {"embed_dim": 8}},
        TEXT,
        "model.args.maxlen",
        "required by MiniGPT",
        id="missing-argument",
    ),
]


@pytest.mark.parametrize(("model", "data", "field", "phrase"), BAD)
def test_refusals_exit_2_naming_the_field(folder, model, data, field, phrase):
    spec = _spec(folder, "bad", model, data)
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"{field}:" in text and phrase in text, text
    assert "Traceback" not in result.output
