"""Training curves: each lane's losses over steps, coloured by LR, per group."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sweeps.verdict.plots.style import (
    CAP_FACTOR,
    FIGSIZE,
    STATUS_STYLE,
    _figure,
    _finite,
    _group_lanes,
    _label,
    _plain_log_ticks,
    _save,
)


def _history(lane: dict) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None]:
    """A lane's (steps, val losses), finite values only, and for a diverged lane the (step,
    loss) where it diverged (loss inf when it was not finite there). The curve is cut at that
    step: a frozen lane keeps reporting its last loss, which would read as a healthy plateau."""
    h = lane.get("history") or {}
    steps, loss = _finite(h.get("step")), _finite(h.get("val_loss"))
    n = min(len(steps), len(loss))
    steps, loss = steps[:n], loss[:n]
    mark = None
    if lane.get("status") == "diverged":
        at = _finite([lane.get("diverged_at_step")])[0]
        after = np.nonzero(steps >= at)[0] if np.isfinite(at) else np.array([n - 1])
        if after.size and n:
            cut = int(after[0])
            steps, loss = steps[: cut + 1], loss[: cut + 1]
            mark = (float(steps[cut]), float(loss[cut]) if np.isfinite(loss[cut]) else math.inf)
        elif np.isfinite(at):
            mark = (float(at), math.inf)
    ok = np.isfinite(steps) & np.isfinite(loss)
    return steps[ok], loss[ok], mark


def training_curves_figure(report: dict) -> Figure:
    """Validation loss vs step, one panel per group, each lane coloured by its LR; every panel
    has the same y-range, set by the lanes that did not blow up."""
    pairs = _group_lanes(report) or [({}, [])]
    groups = [g for g, _ in pairs]
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = _figure(figsize=(FIGSIZE[0], max(FIGSIZE[1], 1.3 + 2.6 * nrows)))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)

    lrs = _finite(lane.get("learning_rate") for _, lanes in pairs for lane in lanes)
    lrs = lrs[np.isfinite(lrs) & (lrs > 0)]
    lo, hi = (lrs.min(), lrs.max()) if lrs.size else (1e-4, 1e-1)
    # One LR colour scale for every panel, so the same colour means the same LR everywhere.
    norm = LogNorm(lo, hi) if hi > lo else LogNorm(lo / 2, hi * 2)
    cmap = matplotlib.colormaps["viridis"]

    drawn = [[_history(lane) for lane in lanes] for _, lanes in pairs]
    every = [v for per in drawn for _, ys, _ in per for v in ys]
    # The shared y-range: the lanes' starting losses x CAP_FACTOR at most, so a lane that
    # blew up runs off the top instead of flattening every other curve into the floor.
    starts = [ys[0] for per in drawn for _, ys, _ in per if ys.size]
    tame = [v for per in drawn for _, ys, mark in per if mark is None for v in ys]
    log_y = bool(every) and min(every) > 0
    cap = CAP_FACTOR * max(starts) if starts and max(starts) > 0 else math.inf
    top = min(max(tame or every or [1.0]), cap) if every else 1.0
    bottom = min(every) if every else (0.1 if log_y else 0.0)
    if log_y:
        ylim = (bottom / 1.25, top * 1.25) if top > bottom else (bottom / 2, bottom * 2)
    else:
        span = max(top - bottom, 1e-9)
        ylim = (bottom - 0.05 * span, top + 0.05 * span)

    for ax, (g, lanes), per in zip(axes.flat, pairs, drawn, strict=False):
        ax.set_title(_label(g, groups) if g else "no groups", fontsize=9)
        ax.grid(True, alpha=0.3)
        best = _finite([g.get("best_lr")])[0] if g else math.nan
        order = np.argsort([_finite([la.get("learning_rate")])[0] for la in lanes])
        for k in order:
            lane, (steps, ys, mark) = lanes[k], per[k]
            lr = _finite([lane.get("learning_rate")])[0]
            colour = cmap(norm(lr)) if np.isfinite(lr) and lr > 0 else "grey"
            bad = mark is not None
            if ys.size and np.isfinite(best) and np.isclose(lr, best, rtol=1e-6) and not bad:
                ax.plot(steps, ys, color="black", lw=3.2, zorder=2, gid="best_lane")
            if ys.size:
                ax.plot(
                    steps,
                    ys,
                    color=colour,
                    lw=0.9 if bad else 1.4,
                    ls="--" if bad else "-",
                    alpha=0.8 if bad else 0.95,
                    zorder=2,
                    gid="diverged_lane" if bad else "lane",
                )
            if bad:  # where it diverged, on the top edge when the loss is off the scale there
                marker, red, _ = STATUS_STYLE["diverged"]
                ax.plot(
                    [mark[0]],
                    [min(mark[1], ylim[1])],
                    ls="",
                    marker=marker,
                    color=red,
                    ms=6,
                    mew=1.8,
                    clip_on=False,
                    zorder=3,
                    gid="diverged",
                )
        if not any(ys.size for _, ys, _ in per):
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
    for k, ax in enumerate(used):
        if k + ncols >= len(pairs):  # nothing below it: it shows the step axis
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("step")
    if log_y:
        used[0].set_yscale("log")
        _plain_log_ticks(used[0].yaxis, *ylim)
    used[0].set_ylim(*ylim)

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=used, label="learning rate")
    if every:
        marker, red, _ = STATUS_STYLE["diverged"]
        fig.legend(
            [
                Line2D([], [], color="#444444", lw=1.4),
                Line2D([], [], color="black", lw=3.2),
                (
                    Line2D([], [], color="#444444", lw=0.9, ls="--"),
                    Line2D([], [], ls="", marker=marker, color=red, mew=1.8, ms=6),
                ),
            ],
            ["lane (colour: its LR)", "lane at the best LR", "diverged lane, x where it diverged"],
            loc="outside lower center",
            ncols=3,
            fontsize=8.5,
            frameon=False,
        )
    fig.supylabel("validation loss")
    fig.suptitle(f"Training curves — {report.get('name') or 'sweep'}")
    return fig


def plot_training_curves(report: dict, path: Path) -> Path:
    """Validation loss vs step, one panel per group (shared axes), each lane coloured by LR."""
    return _save(training_curves_figure(report), path)


# --- metric vs LR -----------------------------------------------------------------------
