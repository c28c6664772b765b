"""Tests for sweeps.verdict.plots: every picture is a real, non-blank PNG, even from ugly reports."""

from __future__ import annotations

import copy
import math
import threading
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from sweeps.verdict.plots import (
    plot_goldilocks,
    plot_lr_find,
    plot_metric_vs_lr,
    plot_training_curves,
    write_sweep_plots,
)

LRS = [float(x) for x in np.logspace(-4, 0, 9)]
STEPS = list(range(0, 501, 25))


def _lane(opt: str, lr: float, seed: int, centre: float, args: dict) -> dict:
    """A lane whose loss is best at `centre` (log-distance), diverged well above it."""
    d = math.log10(lr / centre)
    rng = np.random.default_rng(seed + int(1000 * lr))
    final = 0.08 + 0.25 * d * d + 0.01 * rng.random()
    status = "converged"
    if d > 1.2:
        status = "diverged"
    elif d > 0.9:
        status = "unstable"
    elif d < -1.6:
        status = "stagnated"
    t = np.array(STEPS, dtype=float) / STEPS[-1]
    val = 2.3 * (final / 2.3) ** (t ** (0.6 if d > -1 else 2.0))
    val_loss: list[float | None] = [float(v) for v in val]
    train = [None, *[float(v) * 0.9 for v in val[1:]]]
    diverged_at = None
    if status == "diverged":  # blows up, then NaN: the JSON writer stores None
        k = 6
        val_loss = val_loss[:k] + [1e6 * (lr / centre)] + [None] * (len(STEPS) - k - 1)
        train = train[:k] + [None] * (len(STEPS) - k)
        diverged_at = STEPS[k]
    best = min(v for v in val_loss if v is not None)
    return {
        "run_id": None,
        "trial_id": f"p000-{opt}-constant",
        "optimizer": opt,
        "schedule": "constant",
        "learning_rate": lr,
        "seed": seed,
        "optimizer_args": dict(args),
        "schedule_args": {},
        "status": status,
        "final_train_loss": train[-1],
        "best_val_loss": best,
        "val_metric": None if status == "diverged" else max(0.1, 0.99 - final),
        "diverged_at_step": diverged_at,
        "history": {
            "step": STEPS,
            "train_loss": train,
            "val_loss": val_loss,
            "val_metric": [None] * len(STEPS),
            "learning_rate": [None, *[lr] * (len(STEPS) - 1)],
        },
    }


def _group(opt: str, args: dict, lanes: list[dict], zone: dict | None, lr_free=False) -> dict:
    mine = [la for la in lanes if la["optimizer"] == opt]
    lrs = sorted({la["learning_rate"] for la in mine})
    order = ["converged", "stagnated", "unstable", "diverged"]
    loss, std, status = [], [], []
    for lr in lrs:
        at = [la for la in mine if la["learning_rate"] == lr]
        vals = [la["best_val_loss"] for la in at]
        bad = max((la["status"] for la in at), key=order.index)
        loss.append(float(np.mean(vals)))
        if bad == "diverged" and lr > 0.2:  # absurd, then NaN (None): both must stay readable
            loss[-1] = None if lr > 0.5 else 5e4
        std.append(float(np.std(vals)))
        status.append(bad)
    ok = [(v, lr) for v, lr, s in zip(loss, lrs, status, strict=True) if s == "converged"]
    best_loss, best_lr = min(ok)
    return {
        "optimizer": opt,
        "schedule": "constant",
        "loss": "cross_entropy",
        "optimizer_args": args,
        "schedule_args": {},
        "best_lr": best_lr,
        "zone": zone,
        "max_stable_lr": max(lr for lr, s in zip(lrs, status, strict=True) if s != "diverged"),
        "min_diverged_lr": min(
            (lr for lr, s in zip(lrs, status, strict=True) if s == "diverged"), default=None
        ),
        "edge": None,
        "best_val_loss": best_loss,
        "best_val_metric": 0.97,
        "lr_free": lr_free,
        "curve": {"learning_rate": lrs, "val_loss": loss, "val_loss_std": std, "status": status},
    }


@pytest.fixture(scope="module")
def report() -> dict:
    lanes = [
        _lane(opt, lr, seed, centre, args)
        for opt, centre, args in (("sgd", 0.1, {"momentum": 0.9}), ("adam", 1e-3, {"b1": 0.9}))
        for lr in LRS
        for seed in (0, 1)
    ]
    lanes += [_lane("prodigy", 1.0, seed, 1.0, {}) for seed in (0, 1)]
    groups = [
        _group("sgd", {"momentum": 0.9}, lanes, {"low": 0.03, "high": 0.3}),
        _group("adam", {"b1": 0.9}, lanes, {"low": 3e-4, "high": 3e-3}),
        _group("prodigy", {}, lanes, None, lr_free=True),
    ]
    return {
        "name": "synthetic-optimizers",
        "groups": groups,
        "lanes": lanes,
        "winner": lanes[2],
        "metric": "accuracy",
    }


def _check_png(path: Path, size: tuple[int, int] = (990, 605)) -> None:
    """A real PNG of about the expected pixel size (w, h), and not one flat colour."""
    assert path.is_file()
    assert path.read_bytes()[:4] == b"\x89PNG"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    h, w = img.shape[:2]
    assert abs(w - size[0]) <= 0.1 * size[0] and abs(h - size[1]) <= 0.1 * size[1]
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.02
    packed = (rgb * 255).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    assert len(np.unique(packed)) > 20  # lines in many colours, not a flat background


def test_goldilocks(report: dict, tmp_path: Path) -> None:
    out = plot_goldilocks(report, tmp_path / "g.png")
    assert out == tmp_path / "g.png"
    _check_png(out)


def test_training_curves(report: dict, tmp_path: Path) -> None:
    _check_png(plot_training_curves(report, tmp_path / "t.png"))


def test_metric_vs_lr(report: dict, tmp_path: Path) -> None:
    _check_png(plot_metric_vs_lr(report, tmp_path / "m.png"))


def test_write_sweep_plots_with_an_all_none_group(report: dict, tmp_path: Path) -> None:
    """write_sweep_plots makes all three files, even when a whole group is None (NaN)."""
    bad = copy.deepcopy(report)
    g = bad["groups"][0]
    g["curve"]["val_loss"] = [None] * len(g["curve"]["val_loss"])
    g["curve"]["status"] = ["diverged"] * len(g["curve"]["status"])
    g.update(best_lr=None, zone=None, best_val_loss=None, max_stable_lr=None)
    for lane in bad["lanes"]:
        if lane["optimizer"] == "sgd":
            lane["status"], lane["val_metric"], lane["best_val_loss"] = "diverged", None, None
            lane["history"]["val_loss"] = [None] * len(STEPS)
    before = copy.deepcopy(bad)
    out_dir = tmp_path / "nested" / "plots"
    paths = write_sweep_plots(bad, out_dir)
    assert [p.name for p in paths] == ["goldilocks.png", "training_curves.png", "metric_vs_lr.png"]
    for p in paths:
        assert p.parent == out_dir
        _check_png(p)
    assert bad == before  # plotting never edits the report


def test_empty_report(tmp_path: Path) -> None:
    empty = {"name": "empty", "groups": [], "lanes": [], "winner": None, "metric": "r2"}
    for p in write_sweep_plots(empty, tmp_path):
        assert p.read_bytes()[:4] == b"\x89PNG"


def test_regression_metric_and_ungrouped_lanes(report: dict, tmp_path: Path) -> None:
    reg = copy.deepcopy(report)
    reg["metric"] = "r2"
    reg["lanes"][0]["val_metric"] = -1e9  # a diverged regressor's R² must not flatten the plot
    reg["groups"] = []  # groups are rebuilt from the lanes' keys
    _check_png(plot_metric_vs_lr(reg, tmp_path / "m.png"))


def test_plots_from_threads(report: dict, tmp_path: Path) -> None:
    """No pyplot state: figures drawn in parallel threads all come out whole."""
    errors: list[BaseException] = []

    def draw(i: int) -> None:
        try:
            plot_goldilocks(report, tmp_path / f"g{i}.png")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(2):
        _check_png(tmp_path / f"g{i}.png")


def test_lr_find(tmp_path: Path) -> None:
    lrs = np.logspace(-6, 0, 80)
    curves = []
    for i, opt in enumerate(("adam", "sgd")):
        x = np.log10(lrs)
        loss = 2.3 - 1.5 / (1 + np.exp(-(x + 3.5 - i))) + np.exp(3 * (x + 0.5 - i))
        raw = loss + np.random.default_rng(i).normal(0, 0.05, lrs.size)
        raw_list: list[float | None] = [float(v) for v in raw]
        raw_list[-1] = None  # the explosion ends in NaN
        curves.append(
            {
                "optimizer": opt,
                "seed": 0,
                "learning_rate": [float(v) for v in lrs],
                "loss": raw_list,
                "smoothed": [float(v) for v in loss],
                "stopped_at": 75 if i == 0 else None,
                "suggestions": {"steepest": 10 ** (-3.5 + i), "valley": 10 ** (-2.5 + i)},
            }
        )
    _check_png(plot_lr_find({"curves": curves}, tmp_path / "lr.png"))
    assert plot_lr_find({"curves": []}, tmp_path / "none.png").read_bytes()[:4] == b"\x89PNG"


def test_training_curves_with_empty_panels_in_the_grid(report: dict, tmp_path: Path) -> None:
    """Four groups fill 4 of a 2x3 panel grid: the 2 unused panels must not break the colourbar."""
    extra = copy.deepcopy(report)
    for i, group in enumerate(copy.deepcopy(report["groups"])[:1]):
        group["schedule"] = f"cosine{i}"
        extra["groups"].append(group)
        for lane in copy.deepcopy(
            [la for la in report["lanes"] if la["optimizer"] == group["optimizer"]]
        ):
            lane["schedule"] = group["schedule"]
            extra["lanes"].append(lane)
    assert len(extra["groups"]) == 4
    out = plot_training_curves(extra, tmp_path / "curves.png")
    assert out.read_bytes().startswith(b"\x89PNG")
