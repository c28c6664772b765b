"""Pictures of a sweep: the Goldilocks curve, training curves, metric vs LR and the LR finder.

Every function reads the plain report dict (the sweep's report.json) and writes one PNG.
Only matplotlib's object API is used (`Figure` + `FigureCanvasAgg`), never pyplot: pyplot keeps
global state (current figure, backend), which is neither thread-safe inside a server nor
leak-free, and we never touch the process-wide backend either.

Reports come from JSON, so any number can be None (a NaN or inf when written): everything goes
through `_finite`, which turns those into NaN, and NaN points are skipped or clipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.path import Path as MplPath

FIGSIZE = (9.0, 5.5)
DPI = 110
CAP_FACTOR = 3.0  # the y-range stops at ~3x the worst non-diverged loss
STATUS_STYLE = {  # marker, colour, legend label
    "diverged": ("x", "tab:red", "diverged"),
    "unstable": ("^", "tab:orange", "unstable"),
    "stagnated": ("v", "tab:grey", "stagnated"),
}
# An up arrow, "this point is off the top of the chart". A Path, not a "$\Uparrow$" mathtext
# marker: those go through one module-wide text-to-path cache that threads share.
_TOP_EDGE = MplPath(
    [(-0.15, -1), (0.15, -1), (0.15, 0.2), (0.55, 0.2), (0, 1), (-0.55, 0.2), (-0.15, 0.2), (0, 0)],
    [MplPath.MOVETO, *[MplPath.LINETO] * 6, MplPath.CLOSEPOLY],
)


# --- helpers ----------------------------------------------------------------------------


def _finite(values: Iterable[Any] | None) -> np.ndarray:
    """Float array with None, inf and junk turned into NaN."""
    out = np.array([_number(v) for v in ([] if values is None else values)], dtype=float)
    out[~np.isfinite(out)] = math.nan
    return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _colour(index: int) -> tuple[float, ...]:
    """tab10 by group index, so a group has the same colour in every picture."""
    return matplotlib.colormaps["tab10"](index % 10)


def _key(item: dict) -> tuple[str, ...]:
    # JSON with sorted keys: args dicts compare by value, whatever their order.
    return (
        str(item.get("optimizer")),
        str(item.get("schedule")),
        json.dumps(item.get("optimizer_args") or {}, sort_keys=True, default=str),
        json.dumps(item.get("schedule_args") or {}, sort_keys=True, default=str),
    )


def _group_lanes(report: dict) -> list[tuple[dict, list[dict]]]:
    """(group, its lanes) in report order. Without groups, the lanes' own keys make them."""
    lanes = report.get("lanes") or []
    groups = list(report.get("groups") or [])
    if not groups:
        seen: dict[tuple, dict] = {}
        for lane in lanes:
            seen.setdefault(
                _key(lane),
                {
                    k: lane.get(k)
                    for k in ("optimizer", "schedule", "optimizer_args", "schedule_args")
                },
            )
        groups = list(seen.values())
    return [(g, [lane for lane in lanes if _key(lane) == _key(g)]) for g in groups]


def _label(group: dict, groups: Sequence[dict]) -> str:
    """ "adam · constant"; the fixed args are added only when two groups would share a label."""
    opt, sched = group.get("optimizer"), group.get("schedule")
    base = f"{opt}" if group.get("lr_free") and sched in (None, "constant") else f"{opt} · {sched}"
    twins = [g for g in groups if (g.get("optimizer"), g.get("schedule")) == (opt, sched)]
    if len(twins) > 1:
        args = {**(group.get("optimizer_args") or {}), **(group.get("schedule_args") or {})}
        base += " (" + ", ".join(f"{k}={v}" for k, v in sorted(args.items())) + ")"
    return base + (" (LR-free)" if group.get("lr_free") else "")


def _shade_zone(ax: Any, group: dict, colour: Any) -> bool:
    """Shade the group's Goldilocks zone, if it has one; True when shaded."""
    zone = group.get("zone") or {}
    low, high = _finite([zone.get("low"), zone.get("high")])
    if not (np.isfinite(low) and np.isfinite(high) and high > low > 0):
        return False
    ax.axvspan(low, high, color=colour, alpha=0.12, lw=0)
    return True


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(str(path))
    fig.clear()  # drop the artists now: nothing global references the figure
    return path


def _figure(figsize: tuple[float, float] = FIGSIZE) -> Figure:
    # Constrained layout is the tight layout that also makes room for outside legends and
    # colour bars without changing the pixel size of the PNG.
    return Figure(figsize=figsize, dpi=DPI, layout="constrained")


def _mean_by_lr(lanes: list[dict], field: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted LRs and the NaN-mean of `field` over the seeds of each."""
    by_lr: dict[float, list[float]] = {}
    for lane in lanes:
        lr = _finite([lane.get("learning_rate")])[0]
        if np.isfinite(lr) and lr > 0:
            by_lr.setdefault(float(lr), []).append(_finite([lane.get(field)])[0])
    lrs = np.array(sorted(by_lr), dtype=float)
    vals = np.array([np.nan if np.all(np.isnan(by_lr[x])) else np.nanmean(by_lr[x]) for x in lrs])
    return lrs, vals


# --- the Goldilocks curve ---------------------------------------------------------------


def _curve(group: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A group's (learning rates, mean best val losses, statuses), all the same length."""
    c = group.get("curve") or {}
    lrs, losses = _finite(c.get("learning_rate")), _finite(c.get("val_loss"))
    if len(losses) != len(lrs):
        losses = np.full(len(lrs), np.nan)
    statuses = [str(s) for s in (c.get("status") or [])][: len(lrs)]
    return lrs, losses, statuses + ["converged"] * (len(lrs) - len(statuses))


def plot_goldilocks(report: dict, path: Path) -> Path:
    """Best validation loss vs learning rate per group, zones shaded, failures marked."""
    groups = [g for g, _ in _group_lanes(report)]
    curves = [_curve(g) for g in groups]

    # The y-range is set by what did not diverge: a blown-up loss of 1e12 would otherwise squash
    # every interesting curve into a flat line at the bottom. Values above CAP_FACTOR x the
    # worst stable loss, and NaN losses of diverged LRs, are drawn on the top edge instead.
    stable = [
        y
        for _, ys, st in curves
        for y, s in zip(ys, st, strict=True)
        if s != "diverged" and np.isfinite(y)
    ]
    stable += [
        y
        for g in groups
        if g.get("lr_free")
        for y in _finite([g.get("best_val_loss")])
        if np.isfinite(y)
    ]
    every = stable + [y for _, ys, _ in curves for y in ys if np.isfinite(y)]
    ref = max(stable) if stable else (max(every) if every else 1.0)
    cap = CAP_FACTOR * ref if ref > 0 else ref + 2.0 * max(ref - min(every, default=0.0), 1.0)
    shown = [y for y in every if y <= cap]
    log_y = bool(shown) and min(shown) > 0 and max(shown) / min(shown) > 10**1.5
    off_top = [
        (ys > cap) | (np.isnan(ys) & np.array([s == "diverged" for s in st], dtype=bool))
        for _, ys, st in curves
    ]
    top = None
    if any(m.any() for m in off_top):
        lo, hi = (min(shown), max(shown)) if shown else (0.0, 1.0)
        # The edge sits just above the highest point drawn in full, not at the cap itself.
        # Headroom above it keeps the arrows inside the axes, clear of the title.
        span = max(hi - min(lo, 0.0), abs(hi), 1e-9)
        top = hi * 1.6 if log_y else hi + 0.12 * span
        ylim = (lo / 1.3, top * 1.3) if log_y else (min(lo, 0.0), top + 0.06 * span)

    fig = _figure()
    ax = fig.add_subplot()
    ax.set_xscale("log")
    seen: set[str] = set()  # which marker kinds were drawn, for the legend
    for i, (g, (lrs, losses, statuses), clipped) in enumerate(
        zip(groups, curves, off_top, strict=True)
    ):
        colour, label = _colour(i), _label(g, groups)
        if g.get("lr_free"):
            y = _finite([g.get("best_val_loss")])[0]
            if np.isnan(y) and np.isfinite(losses).any():
                y = np.nanmin(losses)
            if np.isfinite(y):
                ax.axhline(y, color=colour, ls="--", lw=1.6, label=label)
            continue
        ys = np.where(clipped, top if top is not None else np.nan, losses)
        if g.get("edge") in ("low", "high"):
            label += f"  [best at {g['edge']} edge]"
        ax.plot(lrs, ys, "-o", color=colour, lw=1.8, ms=4, label=label)
        if _shade_zone(ax, g, colour):
            seen.add("zone")
        for status, (marker, mcolour, _) in STATUS_STYLE.items():
            mask = np.array([s == status for s in statuses], dtype=bool) & ~clipped
            if mask.any():
                seen.add(status)
                ax.plot(
                    lrs[mask], ys[mask], ls="", marker=marker, color=mcolour, ms=9, mew=2, zorder=4
                )
        if clipped.any():
            ax.plot(
                lrs[clipped],
                ys[clipped],
                ls="",
                marker=_TOP_EDGE,
                color="tab:red",
                ms=14,
                zorder=4,
            )
        best = _finite([g.get("best_lr")])[0]
        if np.isfinite(best) and best > 0:
            y = _finite([g.get("best_val_loss")])[0]
            on_curve = np.isfinite(ys) & np.isclose(lrs, best, rtol=1e-6)
            if on_curve.any():  # the curve's own point, so the star sits on the line
                y = ys[on_curve][0]
            if np.isfinite(y):
                seen.add("best")
                ax.plot(
                    [best],
                    [y if top is None else min(y, top)],
                    ls="",
                    marker="*",
                    ms=18,
                    color=colour,
                    mec="black",
                    mew=0.8,
                    zorder=5,
                )

    if log_y:
        ax.set_yscale("log")
    if top is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("best validation loss")
    ax.set_title(f"Goldilocks zone — {report.get('name') or 'sweep'}")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)

    # Marker meanings once, not per group: the legend lists groups, then what the symbols mean.
    handles, labels = ax.get_legend_handles_labels()
    keys = {
        "best": (Line2D([], [], ls="", marker="*", ms=13, color="white", mec="black"), "best LR"),
        "zone": (Patch(color="grey", alpha=0.25), "Goldilocks zone"),
        **{
            s: (Line2D([], [], ls="", marker=m, color=c, mew=2), lab)
            for s, (m, c, lab) in STATUS_STYLE.items()
        },
        "off": (
            Line2D([], [], ls="", marker=_TOP_EDGE, color="tab:red", ms=12),
            "diverged / off scale",
        ),
    }
    if top is not None:
        seen.add("off")
    extra = [v for k, v in keys.items() if k in seen]
    if handles:
        ax.legend(
            [*handles, *(h for h, _ in extra)],
            [*labels, *(lab for _, lab in extra)],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8.5,
            frameon=False,
        )
    else:
        ax.text(0.5, 0.5, "no finite validation loss", ha="center", transform=ax.transAxes)
    return _save(fig, path)


# --- training curves --------------------------------------------------------------------


def plot_training_curves(report: dict, path: Path) -> Path:
    """Validation loss vs step, one panel per group, each lane coloured by its LR."""
    pairs = _group_lanes(report) or [({}, [])]
    groups = [g for g, _ in pairs]
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = _figure(figsize=(FIGSIZE[0], max(FIGSIZE[1], 2.9 * nrows)))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)

    lrs = _finite(lane.get("learning_rate") for _, lanes in pairs for lane in lanes)
    lrs = lrs[np.isfinite(lrs) & (lrs > 0)]
    lo, hi = (lrs.min(), lrs.max()) if lrs.size else (1e-4, 1e-1)
    # One LR colour scale for every panel, so the same colour means the same LR everywhere.
    norm = LogNorm(lo, hi) if hi > lo else LogNorm(lo / 2, hi * 2)
    cmap = matplotlib.colormaps["viridis"]

    for ax, (g, lanes) in zip(axes.flat, pairs, strict=False):
        ax.set_title(_label(g, groups) if g else "no groups", fontsize=9)
        ax.grid(True, alpha=0.3)
        drawn: list[tuple[np.ndarray, bool]] = []  # (finite losses, diverged) per lane
        for lane in sorted(lanes, key=lambda la: _finite([la.get("learning_rate")])[0]):
            h = lane.get("history") or {}
            steps, loss = _finite(h.get("step")), _finite(h.get("val_loss"))
            n = min(len(steps), len(loss))
            ok = np.isfinite(steps[:n]) & np.isfinite(loss[:n])
            if not ok.any():
                continue
            lr = _finite([lane.get("learning_rate")])[0]
            colour = cmap(norm(lr)) if np.isfinite(lr) and lr > 0 else "grey"
            bad = lane.get("status") == "diverged"
            ax.plot(
                steps[:n][ok],
                loss[:n][ok],
                color=colour,
                lw=0.8 if bad else 1.4,
                ls="--" if bad else "-",
                alpha=0.7 if bad else 0.95,
            )
            drawn.append((loss[:n][ok], bad))
        drew = bool(drawn)
        if drew and all((ys > 0).all() for ys, _ in drawn):
            ax.set_yscale("log")
        # As on the Goldilocks plot: a diverged lane's spike runs off the top of the panel
        # rather than squashing the lanes that trained.
        stable = [ys.max() for ys, bad in drawn if not bad]
        if (
            stable
            and max(stable) > 0
            and any(ys.max() > CAP_FACTOR * max(stable) for ys, _ in drawn)
        ):
            ax.set_ylim(top=CAP_FACTOR * max(stable))
        if not drew:
            ax.text(
                0.5,
                0.5,
                "no finite values",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
    used = list(axes.flat)[: len(pairs)]
    for ax in list(axes.flat)[len(pairs) :]:
        ax.remove()  # a removed panel must not be handed to the colourbar below

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=used, label="learning rate")
    fig.supxlabel("step")
    fig.supylabel("validation loss")
    fig.suptitle(f"Training curves — {report.get('name') or 'sweep'}")
    return _save(fig, path)


# --- metric vs LR -----------------------------------------------------------------------


def plot_metric_vs_lr(report: dict, path: Path) -> Path:
    """The headline validation metric (mean over seeds) vs learning rate, per group."""
    metric = str(report.get("metric") or "metric")
    pairs = _group_lanes(report)
    groups = [g for g, _ in pairs]
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_xscale("log")
    for i, (g, lanes) in enumerate(pairs):
        lrs, vals = _mean_by_lr(lanes, "val_metric")
        if metric == "r2":
            # A diverged regressor can score R² = -1e9; below -1 is "useless" and nothing more.
            vals = np.maximum(vals, -1.0)
        ok = np.isfinite(vals)
        if not ok.any():
            continue
        colour, label = _colour(i), _label(g, groups)
        if g.get("lr_free"):
            ax.axhline(np.nanmean(vals), color=colour, ls="--", lw=1.6, label=label)
            continue
        ax.plot(lrs[ok], vals[ok], "-o", color=colour, lw=1.8, ms=4, label=label)
        _shade_zone(ax, g, colour)
    ax.set_xlabel("learning rate")
    ax.set_ylabel({"r2": "validation R²", "accuracy": "validation accuracy"}.get(metric, metric))
    ax.set_title(f"{metric} vs learning rate — {report.get('name') or 'sweep'}")
    ax.grid(True, which="major", alpha=0.35)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5, frameon=False)
    else:
        ax.text(0.5, 0.5, f"no finite {metric}", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def write_sweep_plots(report: dict, out_dir: Path) -> list[Path]:
    """The three sweep pictures into `out_dir`: goldilocks, training curves, metric vs LR."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        plot_goldilocks(report, out_dir / "goldilocks.png"),
        plot_training_curves(report, out_dir / "training_curves.png"),
        plot_metric_vs_lr(report, out_dir / "metric_vs_lr.png"),
    ]


# --- LR range test ----------------------------------------------------------------------


def plot_lr_find(result: dict, path: Path) -> Path:
    """LR range test: smoothed loss vs LR per curve (raw faint), suggestions marked."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_xscale("log")
    tops, bottoms = [], []
    for i, c in enumerate(result.get("curves") or []):
        colour = _colour(i)
        lrs = _finite(c.get("learning_rate"))
        raw, smooth = _finite(c.get("loss")), _finite(c.get("smoothed"))
        name = f"{c.get('optimizer')} (seed {c.get('seed')})"
        if len(raw) == len(lrs):
            ax.plot(lrs, raw, color=colour, lw=0.8, alpha=0.25)
        if len(smooth) != len(lrs) or not np.isfinite(smooth).any():
            continue
        ax.plot(lrs, smooth, color=colour, lw=1.8, label=name)
        first = smooth[np.isfinite(smooth)][0]
        tops.append(first + max(0.5 * abs(first), 1e-3))
        bottoms.append(np.nanmin(smooth))
        stop = c.get("stopped_at")
        if isinstance(stop, int) and 0 <= stop < len(lrs) and np.isfinite(lrs[stop]):
            ax.axvline(lrs[stop], color=colour, ls=":", lw=1, alpha=0.6)
        order = np.argsort(lrs)
        for kind, marker in (("steepest", "o"), ("valley", "D")):
            lr = _finite([(c.get("suggestions") or {}).get(kind)])[0]
            if not (np.isfinite(lr) and lr > 0):
                continue
            ok = np.isfinite(smooth[order]) & (lrs[order] > 0)
            if not ok.any():
                continue
            y = np.interp(np.log(lr), np.log(lrs[order][ok]), smooth[order][ok])
            ax.plot(
                [lr],
                [y],
                ls="",
                marker=marker,
                ms=9,
                color=colour,
                mec="black",
                zorder=5,
                label=f"{name} {kind}: {lr:.2g}",
            )
    # The range test ends in an explosion; showing it in full flattens the useful dip.
    if tops:
        span = max(tops) - min(bottoms)
        ax.set_ylim(min(bottoms) - 0.05 * span, max(tops))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title("LR range test")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8.5)
    return _save(fig, path)


__all__ = [
    "plot_goldilocks",
    "plot_lr_find",
    "plot_metric_vs_lr",
    "plot_training_curves",
    "write_sweep_plots",
]
