"""benchmarks/horizon_ladder.py --load: kept lanes judged again by the product's transfer code,
on a loss surface whose best LR at every horizon is known in closed form."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GRID = 1e-4 * 2 ** (np.arange(21) / 2)


def _ladder():
    spec = importlib.util.spec_from_file_location(
        "ladder", ROOT / "benchmarks" / "horizon_ladder.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _loss(lr: float, horizon: int) -> float:
    """The best LR falls with the horizon towards 0.004, more slowly the longer the run."""
    x = math.log(lr)
    return 1.0 + 0.03 * (x - math.log(0.004)) ** 2 + 0.082 * math.exp(-0.8 * x) * horizon**-0.7


def _best(horizon: int) -> float:
    fine = np.geomspace(1e-4, 0.1, 20001)
    return float(fine[np.argmin([_loss(v, horizon) for v in fine])])


def test_kept_lanes_are_judged_again_and_the_loss_curves_find_the_known_best_lr(tmp_path):
    lanes = [
        {"lr": float(lr), "seed": seed, "horizon": h, "status": "converged",
         "step": [0, h], "val_loss": [2.5, _loss(float(lr), h)]}
        for h in (10, 20, 40, 80, 160) for lr in GRID for seed in (0, 1)
    ]  # fmt: skip
    (tmp_path / "teacher-adam.json").write_text(
        json.dumps({"n_train": 10**6, "seconds": 1.0, "lanes": lanes})
    )
    got = _ladder().case("teacher", "adam", [0, 1], True, tmp_path, load=True)
    assert got["loaded"] and got["seeds"] == [0, 1] and got["horizons"] == [10, 20, 40, 80, 160]
    three, four = got["splits"]  # [10, 20, 40] -> 80 and [10, 20, 40, 80] -> 160
    for split in (three, four):
        assert split["method"] == "loss_curves"
        assert abs(math.log2(split["predicted"] / _best(split["target"]))) < 0.15
        assert abs(split["prediction_error"]) < 0.15 and split["honest"]
    assert three["held_out_error"] is None and not three["reliable"]
    assert four["held_out_error"] < 0.5 and four["reliable"], four["note"]
