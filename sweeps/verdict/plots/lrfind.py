"""The LR range test's curves and its suggestions."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sweeps.verdict.plots.style import (
    _colour,
    _figure,
    _finite,
    _fmt,
    _save,
    legend_right,
)


def _geomean(values: Iterable[Any]) -> float:
    arr = _finite(values)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    return float(np.exp(np.mean(np.log(arr)))) if arr.size else math.nan


def lr_find_figure(result: dict) -> Figure:
    """LR range test: smoothed loss vs LR, one colour per optimizer (its seeds share it, raw
    loss faint), suggestions marked on each curve and given once per optimizer in the legend."""
    curves = list(result.get("curves") or [])
    optimizers = list(dict.fromkeys(str(c.get("optimizer")) for c in curves))
    summary = result.get("suggestions") or {}
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_xscale("log")
    tops, bottoms = [], []
    seen: set[str] = set()
    for c in curves:
        opt = str(c.get("optimizer"))
        colour = _colour(optimizers.index(opt))
        lrs = _finite(c.get("learning_rate"))
        raw, smooth = _finite(c.get("loss")), _finite(c.get("smoothed"))
        if len(raw) == len(lrs) and np.isfinite(raw).any():
            seen.add("raw")
            ax.plot(lrs, raw, color=colour, lw=0.7, alpha=0.22, gid="raw")
        if len(smooth) != len(lrs) or not np.isfinite(smooth).any():
            continue
        ax.plot(lrs, smooth, color=colour, lw=1.8, gid="smoothed")
        # The meaningful part of a curve: from where it starts, down its dip, and up again
        # until it is twice its start (the range test stops a curve once it explodes).
        finite = smooth[np.isfinite(smooth)]
        start, low = finite[0], finite.min()
        tops.append(min(finite.max(), max(start, low) + max(abs(start), abs(low), 1e-3)))
        bottoms.append(low)
        stop = c.get("stopped_at")
        if isinstance(stop, int) and stop >= 0 and len(lrs):
            at = lrs[min(stop, len(lrs) - 1)]
            if np.isfinite(at):
                seen.add("stop")
                ax.axvline(at, color=colour, ls=":", lw=1.1, alpha=0.6, gid="stop")
        order = np.argsort(lrs)
        ok = np.isfinite(smooth[order]) & (lrs[order] > 0)
        for kind, marker in (("steepest", "o"), ("valley", "D")):
            lr = _finite([(c.get("suggestions") or {}).get(kind)])[0]
            if not (np.isfinite(lr) and lr > 0 and ok.any()):
                continue
            seen.add(kind)
            y = np.interp(np.log(lr), np.log(lrs[order][ok]), smooth[order][ok])
            ax.plot(
                [lr], [y], ls="", marker=marker, ms=8, color=colour, mec="black", zorder=5, gid=kind
            )
    if tops:
        lo, hi = min(bottoms), max(tops)
        span = max(hi - lo, 1e-6)
        ax.set_ylim(lo - 0.06 * span, hi + 0.04 * span)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title("LR range test")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)

    handles, labels = [], []
    for i, opt in enumerate(optimizers):
        mine = [c for c in curves if str(c.get("optimizer")) == opt]
        tips = []
        for kind in ("steepest", "valley"):
            given = (summary.get(opt) or {}).get(kind) if isinstance(summary, dict) else None
            value = _finite([given])[0]
            if not np.isfinite(value):  # no summary: the geometric mean over seeds
                value = _geomean((c.get("suggestions") or {}).get(kind) for c in mine)
            if np.isfinite(value):
                tips.append(f"{kind} {_fmt(value)}")
        seeds = f" ({len(mine)} seeds)" if len(mine) > 1 else ""
        handles.append(Line2D([], [], color=_colour(i), lw=1.8))
        labels.append(f"{opt}{seeds}" + (": " + ", ".join(tips) if tips else ""))
    keys = {
        "steepest": (
            Line2D([], [], ls="", marker="o", ms=7, color="white", mec="black"),
            "steepest descent",
        ),
        "valley": (Line2D([], [], ls="", marker="D", ms=6, color="white", mec="black"), "valley"),
        "stop": (Line2D([], [], color="#444444", ls=":", lw=1.2), "stopped: loss exploded"),
        "raw": (Line2D([], [], color="#444444", lw=0.7, alpha=0.35), "raw loss"),
    }
    extra = [v for k, v in keys.items() if k in seen]
    if handles:
        legend_right(ax, [*handles, *(h for h, _ in extra)], [*labels, *(lab for _, lab in extra)])
    else:
        ax.text(0.5, 0.5, "no curves", ha="center", va="center", transform=ax.transAxes)
    return fig


def plot_lr_find(result: dict, path: Path) -> Path:
    """LR range test: smoothed loss vs LR per optimizer (raw faint), suggestions marked."""
    return _save(lr_find_figure(result), path)
