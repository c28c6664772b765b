"""Tests for sweeps.verdict.plots: every picture is a real, non-blank PNG, even from ugly reports,
and draws what it should: one panel per group with its own zone band, best LR, stability edge
and diverged LRs; status markers in colours no series uses; shared axes; legends that fit.

The reports under plot_reports/ are the examples' own report.json files (digits, schedules,
diabetes, breast_cancer; see plot_reports/README.md), so each example's pictures are checked
element by element without running a sweep."""

from __future__ import annotations

import copy
import json
import math
import threading
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from sweeps.verdict.plots import (
    STATUS_ORDER,
    STATUS_STYLE,
    goldilocks_figure,
    lr_find_figure,
    metric_vs_lr_figure,
    plot_goldilocks,
    plot_lr_find,
    plot_metric_vs_lr,
    plot_training_curves,
    training_curves_figure,
    write_sweep_plots,
)
from sweeps.verdict.plots.style import CAP_FACTOR, DIVERGED_Y

REPORTS = Path(__file__).parent / "plot_reports"
EXAMPLES = ("digits", "schedules", "diabetes", "breast_cancer")

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
    elif d > 0.4:
        status = "too_high"
    elif d < -1.6:
        status = "stagnated"
    elif d < -1.2:
        status = "too_slow"
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
    order = list(STATUS_ORDER)
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
        # going up from the best, the last LR before one with an unstable or diverged lane
        "max_stable_lr": max(
            lr
            for lr in lrs
            if best_lr <= lr
            and all(
                s not in ("unstable", "diverged")
                for x, s in zip(lrs, status, strict=True)
                if x <= lr
            )
        ),
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
        _group("adam", {"b1": 0.9}, lanes, {"low": 3e-4, "high": 1e-3}),
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


def _png_size(fig: Figure) -> tuple[int, int]:
    w, h = fig.get_size_inches() * fig.dpi
    return int(round(w)), int(round(h))


def test_goldilocks(report: dict, tmp_path: Path) -> None:
    out = plot_goldilocks(report, tmp_path / "g.png")
    assert out == tmp_path / "g.png"
    _check_png(out, size=(990, 542))  # two LR panels and a low LR-free one


def test_training_curves(report: dict, tmp_path: Path) -> None:
    _check_png(plot_training_curves(report, tmp_path / "t.png"))


def test_metric_vs_lr(report: dict, tmp_path: Path) -> None:
    _check_png(plot_metric_vs_lr(report, tmp_path / "m.png"), size=(990, 731))


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
    for p, size in zip(paths, [(990, 542), (990, 605), (990, 731)], strict=True):
        assert p.parent == out_dir
        _check_png(p, size)
    assert bad == before  # plotting never edits the report
    fig = goldilocks_figure(bad)
    sgd = fig.axes[0]
    assert not _lines(sgd, "curve") and not _patches(sgd, "zone") and not _lines(sgd, "best")
    assert sorted(_xs(sgd, "diverged")) == pytest.approx(LRS)  # every LR on the red strip
    assert "every LR diverged" in [t.get_text() for t in sgd.texts]


def test_empty_report(tmp_path: Path) -> None:
    empty = {"name": "empty", "groups": [], "lanes": [], "winner": None, "metric": "r2"}
    for p in write_sweep_plots(empty, tmp_path):
        assert p.read_bytes()[:4] == b"\x89PNG"


def test_regression_metric_and_ungrouped_lanes(report: dict, tmp_path: Path) -> None:
    reg = copy.deepcopy(report)
    reg["metric"] = "r2"
    reg["lanes"][0]["val_metric"] = -1e9  # a diverged regressor's R² must not flatten the plot
    reg["groups"] = []  # groups are rebuilt from the lanes' keys
    _check_png(plot_metric_vs_lr(reg, tmp_path / "m.png"), size=(990, 731))
    ax = metric_vs_lr_figure(reg).axes[0]
    assert ax.get_ylim()[0] >= -1.2  # clipped at R² = -1, not stretched to -1e9


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
        _check_png(tmp_path / f"g{i}.png", size=(990, 542))


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


# --- what the pictures draw ---------------------------------------------------------------


STATUS_COLOURS = {to_rgba(colour) for _, colour, _ in STATUS_STYLE.values()}


def _lines(ax, gid: str) -> list:
    return [line for line in ax.get_lines() if line.get_gid() == gid]


def _xs(ax, *gids: str) -> list[float]:
    return sorted(float(x) for gid in gids for line in _lines(ax, gid) for x in line.get_xdata())


def _patches(ax, gid: str) -> list:
    return [p for p in ax.patches if p.get_gid() == gid]


def _span(patch) -> tuple[float, float]:
    """The LR range a zone band covers (a Rectangle from axvspan, or a Polygon)."""
    if hasattr(patch, "get_width"):
        return patch.get_x(), patch.get_x() + patch.get_width()
    xs = np.asarray(patch.get_xy())[:, 0]
    return float(xs.min()), float(xs.max())


def _report(name: str) -> dict:
    return json.loads((REPORTS / f"{name}.json").read_text())


def _panels(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _lrs_with(group: dict, status: str) -> list[float]:
    c = group["curve"]
    return sorted(lr for lr, s in zip(c["learning_rate"], c["status"], strict=True) if s == status)


def _check_goldilocks(report: dict, fig: Figure | None = None) -> None:
    """`fig` (by default drawn from `report`) shows what `report` says, element by element."""
    groups = report["groups"]
    fig = fig or goldilocks_figure(report)
    axes = _panels(fig)
    assert len(axes) == len(groups)  # one panel per group, not one crowded axes
    assert len({ax.get_xlim() for ax in axes}) == 1 and axes[0].get_xscale() == "log"
    assert len({ax.get_ylim() for ax in axes}) == 1  # and one y-range, one kind of scale
    assert len({ax.get_yscale() for ax in axes}) == 1
    # One legend for the whole figure, short enough to sit in one or two rows.
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(labels) <= 12  # two rows of six
    assert not any(lab.startswith(("adam", "sgd", "momentum")) for lab in labels)
    series = {to_rgba(line.get_color()) for ax in axes for line in _lines(ax, "curve")}
    assert series and not series & STATUS_COLOURS  # no series in a status colour

    log = axes[0].get_yscale() == "log"
    t = np.log10 if log else np.asarray
    lo, hi = t(axes[0].get_ylim())
    for ax, g in zip(axes, groups, strict=True):
        if g.get("lr_free"):
            assert _lines(ax, "lr_free") and not _patches(ax, "zone")
            continue
        zones = _patches(ax, "zone")
        if g.get("zone"):
            assert len(zones) == 1  # its own band, and only its own
            low, high = _span(zones[0])
            if g["zone"]["low"] < g["zone"]["high"]:
                assert (low, high) == pytest.approx((g["zone"]["low"], g["zone"]["high"]))
            else:
                assert low < g["zone"]["low"] < high
        else:
            assert not zones
        for status, (_, colour, _) in STATUS_STYLE.items():
            assert _xs(ax, status, f"{status}_no_value") == pytest.approx(_lrs_with(g, status))
            assert all(to_rgba(line.get_color()) == to_rgba(colour) for line in _lines(ax, status))
        for line in _lines(ax, "diverged"):  # on the strip at the top, whatever their loss
            assert np.all(np.asarray(line.get_ydata()) == DIVERGED_Y)
        if g.get("best_lr") is not None and g.get("best_val_loss") is not None:
            assert _xs(ax, "best") == pytest.approx([g["best_lr"]])
        edges = sorted(set(_xs(ax, "edge")))  # an axvline has two points
        if g.get("min_diverged_lr") is not None:
            assert len(edges) == 1
            stable = g.get("max_stable_lr") or 0.0
            assert stable < edges[0] <= g["min_diverged_lr"]
        else:
            assert not edges
        # What did not diverge is inside the panel, under the strip of diverged markers.
        c = g["curve"]
        tame = [
            y
            for y, s in zip(c["val_loss"], c["status"], strict=True)
            if y is not None and s != "diverged"
        ]
        for y in tame:
            assert 0.0 <= (t(y) - lo) / (hi - lo) < DIVERGED_Y - 0.04
    # The range is what did not diverge, not what did: the data fills most of the height.
    tame = [
        y
        for g in groups
        if not g.get("lr_free")
        for y, s in zip(g["curve"]["val_loss"], g["curve"]["status"], strict=True)
        if y is not None and s != "diverged"
    ]
    if len(set(tame)) > 1:
        assert (t(max(tame)) - t(min(tame))) / (hi - lo) > 0.6


def _check_training_curves(report: dict) -> None:
    fig = training_curves_figure(report)
    axes = _panels(fig)
    assert len(axes) == len(report["groups"])
    assert len({ax.get_ylim() for ax in axes}) == 1  # one y-range for every panel
    assert len({ax.get_yscale() for ax in axes}) == 1
    bottom, top = axes[0].get_ylim()
    starts = [la["history"]["val_loss"][0] for la in report["lanes"]]
    assert top <= CAP_FACTOR * max(s for s in starts if s is not None) * 1.3
    for ax, (g, lanes) in zip(axes, _pairs(report), strict=True):
        # Each diverged lane has its x where it diverged (the first eval at or after the step
        # it blew up, or its last one), and its line stops there.
        want = []
        for la in lanes:
            if la["status"] != "diverged":
                continue
            steps, at = la["history"]["step"], la["diverged_at_step"]
            want.append(next((s for s in steps if at is not None and s >= at), steps[-1]))
        assert _xs(ax, "diverged") == pytest.approx(sorted(want))
        for line in _lines(ax, "diverged_lane"):
            assert max(line.get_xdata()) <= max(want)
        best = _lines(ax, "best_lane")
        if g.get("best_lr") is not None:  # the lane worth looking at is outlined, in range
            assert best
            ys = np.concatenate([line.get_ydata() for line in best])
            assert bottom < ys.min() and ys.max() < top


def _pairs(report: dict) -> list[tuple[dict, list[dict]]]:
    def key(item):
        return (
            item["optimizer"],
            item["schedule"],
            json.dumps(item["optimizer_args"], sort_keys=True),
            json.dumps(item["schedule_args"], sort_keys=True),
        )

    return [(g, [la for la in report["lanes"] if key(la) == key(g)]) for g in report["groups"]]


def _check_metric_vs_lr(report: dict, fig: Figure | None = None) -> None:
    groups = report["groups"]
    fig = fig or metric_vs_lr_figure(report)
    ax, strip = fig.axes[:2]
    # Every diverged LR of every group has its red x on the main axes (at its metric, or on
    # the bottom edge when it has none): none is dropped.
    want = sorted(lr for g in groups if not g.get("lr_free") for lr in _lrs_with(g, "diverged"))
    assert _xs(ax, "diverged", "diverged_off_scale") == pytest.approx(want)
    series = {to_rgba(line.get_color()) for line in _lines(ax, "curve")}
    assert series and not series & STATUS_COLOURS
    legend = ax.get_legend() or (fig.legends[0] if fig.legends else None)
    assert legend is not None and len(legend.get_texts()) <= len(groups) + 9
    # The strip: one row per group, its own zone band, best star and status markers.
    assert [t.get_text() for t in strip.get_yticklabels()][: len(groups)] and len(
        strip.get_yticks()
    ) == len(groups)
    zones = _patches(strip, "zone")
    assert len(zones) == sum(g.get("zone") is not None for g in groups)
    for i, g in enumerate(groups):
        mine = [z for z in zones if abs(z.get_y() + z.get_height() / 2 - i) < 1e-9]
        assert len(mine) == (1 if g.get("zone") else 0)
        if mine and g["zone"]["low"] < g["zone"]["high"]:
            assert _span(mine[0]) == pytest.approx((g["zone"]["low"], g["zone"]["high"]))
        if g.get("lr_free"):
            continue
        for status in STATUS_STYLE:
            got = sorted(
                float(x)
                for line in _lines(strip, status)
                for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)
                if y == i
            )
            assert got == pytest.approx(_lrs_with(g, status))


def test_goldilocks_elements(report: dict) -> None:
    _check_goldilocks(report)
    fig = goldilocks_figure(report)
    sgd, adam, prodigy = _panels(fig)
    assert sgd.get_title(loc="left") == "sgd · constant"
    assert "prodigy" in prodigy.get_title(loc="left")
    assert _xs(adam, "diverged") == pytest.approx([lr for lr in LRS if lr > 0.015])
    assert not _xs(sgd, "diverged") and not _xs(sgd, "edge")


def test_the_element_checks_can_fail(report: dict) -> None:
    """Checked against a report that claims something else, the drawn figures fail."""
    fig = goldilocks_figure(report)
    claims = copy.deepcopy(report)
    claims["groups"][0]["curve"]["status"][0] = "diverged"  # an LR the figure did not mark
    with pytest.raises(AssertionError):
        _check_goldilocks(claims, fig)
    claims = copy.deepcopy(report)
    claims["groups"][1]["zone"] = {"low": 1e-4, "high": 1e-3}  # not the band it drew
    with pytest.raises(AssertionError):
        _check_goldilocks(claims, fig)
    fig = metric_vs_lr_figure(report)
    claims = copy.deepcopy(report)
    claims["groups"][0]["curve"]["status"][-1] = "diverged"
    with pytest.raises(AssertionError):
        _check_metric_vs_lr(claims, fig)


def test_training_curves_elements(report: dict) -> None:
    _check_training_curves(report)


def test_metric_vs_lr_elements(report: dict) -> None:
    _check_metric_vs_lr(report)


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_pictures(example: str, tmp_path: Path) -> None:
    """Each example's own report: zones per panel, markers where the statuses say, shared
    axes, diverged LRs marked, and three whole PNGs."""
    report = _report(example)
    _check_goldilocks(report)
    _check_training_curves(report)
    _check_metric_vs_lr(report)
    sizes = [
        _png_size(f(report))
        for f in (goldilocks_figure, training_curves_figure, metric_vs_lr_figure)
    ]
    for path, size in zip(write_sweep_plots(report, tmp_path), sizes, strict=True):
        _check_png(path, size)


def test_schedules_zones_do_not_merge() -> None:
    """The issue's picture: five schedules' zones were one brown block on one axes."""
    report = _report("schedules")
    axes = _panels(goldilocks_figure(report))
    assert len(axes) == 5
    assert [len(_patches(ax, "zone")) for ax in axes] == [1] * 5
    assert len({_span(_patches(ax, "zone")[0]) for ax in axes}) > 1  # each group its own


def _check_lr_find(result: dict) -> None:
    curves = result["curves"]
    optimizers = list(dict.fromkeys(c["optimizer"] for c in curves))
    ax = lr_find_figure(result).axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    # One entry per optimizer (seeds share it), plus what the symbols mean, once.
    assert len(texts) <= len(optimizers) + 4
    for opt in optimizers:
        assert sum(t.split(" ")[0].rstrip(":") == opt for t in texts) == 1
    smoothed = _lines(ax, "smoothed")
    assert len(smoothed) == len(curves)
    by_opt: dict[str, set] = {}
    for c, line in zip(curves, smoothed, strict=True):
        by_opt.setdefault(c["optimizer"], set()).add(to_rgba(line.get_color()))
    assert all(len(colours) == 1 for colours in by_opt.values())  # seeds in one colour
    assert len(set().union(*by_opt.values())) == len(optimizers)
    # Every curve's meaningful part is on the chart: its start, its dip, and its climb until
    # twice its start (or its end, where the test stopped it).
    bottom, top = ax.get_ylim()
    for c in curves:
        ys = np.array([v for v in c["smoothed"] if v is not None and math.isfinite(v)])
        assert bottom < ys.min() and ys[0] < top
        assert min(ys.max(), 2 * ys[0]) <= top
    # Each suggestion sits on its curve.
    for kind in ("steepest", "valley"):
        want = sorted(c["suggestions"][kind] for c in curves if c["suggestions"][kind])
        assert _xs(ax, kind) == pytest.approx(want)


@pytest.mark.parametrize("name", ["lr_find_digits", "lr_find_diabetes"])
def test_lr_find_elements(name: str, tmp_path: Path) -> None:
    result = _report(name)
    _check_lr_find(result)
    _check_png(plot_lr_find(result, tmp_path / "lr.png"))
