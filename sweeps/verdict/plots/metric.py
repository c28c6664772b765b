"""The headline metric vs LR per group, with each LR's status on a strip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from sweeps.verdict.plots.style import (
    FIGSIZE,
    STATUS_STYLE,
    ZONE_COLOUR,
    _best_star,
    _by_lr,
    _colour,
    _figure,
    _fill,
    _finite,
    _group_lanes,
    _label,
    _lr_limits,
    _save,
    _status_handles,
    _zone,
    _zone_span,
    legend_right,
)


def _statuses_at(group: dict, lrs: np.ndarray, own: list[str]) -> list[str]:
    """The verdict's worst status at each LR (its curve); the lanes' own where it has none."""
    c = group.get("curve") or {}
    known = list(zip(_finite(c.get("learning_rate")), c.get("status") or [], strict=False))
    out = []
    for x, fallback in zip(lrs, own, strict=True):
        hit = [str(s) for k, s in known if np.isclose(k, x, rtol=1e-9)]
        out.append(hit[0] if hit else fallback)
    return out


def metric_vs_lr_figure(report: dict) -> Figure:
    """The headline validation metric (mean over seeds) vs LR, all groups on one axes, and
    under it a strip with one row per group: its zone, best LR and each LR's status."""
    metric = str(report.get("metric") or "metric")
    pairs = _group_lanes(report)
    groups = [g for g, _ in pairs]
    floor = -1.0 if metric == "r2" else -math.inf  # R² below -1 is "useless" and nothing more
    rows = []
    for g, lanes in pairs:
        lrs, vals, own = _by_lr(lanes, "val_metric")
        statuses = _statuses_at(g, lrs, own)
        div = np.array([s == "diverged" for s in statuses], dtype=bool)
        rows.append((lrs, np.maximum(vals, floor), statuses, div))
    # The y-range is set by what did not diverge (an LR-free group's level included).
    tame = [
        float(v)
        for g, (_, vals, _, div) in zip(groups, rows, strict=True)
        for v in (vals if g.get("lr_free") else vals[~div])
        if np.isfinite(v)
    ]
    ylim = None
    if tame:
        lo, hi = min(tame), max(tame)
        span = max(hi - lo, 1e-3)
        ylim = (lo - 0.1 * span, hi + 0.06 * span)
    xlim = _lr_limits(
        x for g, (lrs, *_) in zip(groups, rows, strict=True) if not g.get("lr_free") for x in lrs
    )

    n = max(len(groups), 1)
    strip_h = 0.3 * n + 0.25
    fig = _figure((FIGSIZE[0], FIGSIZE[1] + strip_h))
    ax, strip = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [FIGSIZE[1] - 1.2, strip_h]}
    )
    seen: set[str] = set()
    marker, red, _ = STATUS_STYLE["diverged"]
    for i, (g, (lrs, vals, statuses, div)) in enumerate(zip(groups, rows, strict=True)):
        colour, label = _colour(i), _label(g, groups)
        if g.get("lr_free"):
            if np.isfinite(vals).any():
                ax.axhline(
                    np.nanmean(vals), color=colour, ls="--", lw=1.6, label=label, gid="lr_free"
                )
            strip.text(
                math.sqrt(xlim[0] * xlim[1]),
                i,
                "LR-free: no LR to tune",
                ha="center",
                va="center",
                fontsize=7.5,
                color=colour,
            )
            continue
        ys = np.where(div, np.nan, vals)  # NaN breaks the line at a diverged LR
        ax.plot(lrs, ys, "-o", color=colour, lw=1.8, ms=4, label=label, zorder=3, gid="curve")
        # Diverged LRs stay on the picture: a red x at their metric when it is on the scale,
        # on the bottom edge when it is not (or there is none).
        on = div & (_within(vals, ylim) if ylim else np.zeros(len(div), dtype=bool))
        if div.any():
            seen.add("diverged")
        if on.any():
            ax.plot(
                lrs[on],
                vals[on],
                ls="",
                marker=marker,
                color=red,
                ms=7,
                mew=2,
                zorder=4,
                gid="diverged",
            )
        if (div & ~on).any():  # an empty unclipped line would still claim a bounding box
            ax.plot(
                lrs[div & ~on],
                np.full(int((div & ~on).sum()), 0.03),
                ls="",
                marker=marker,
                color=red,
                ms=7,
                mew=2,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                zorder=4,
                gid="diverged_off_scale",
            )
        best = _finite([g.get("best_lr")])[0]
        at = np.isclose(lrs, best, rtol=1e-6) & np.isfinite(ys)
        if at.any():
            seen.add("best")
            ax.plot(
                [best],
                [ys[at][0]],
                ls="",
                marker="*",
                ms=15,
                color=colour,
                mec="black",
                mew=0.8,
                zorder=5,
                gid="best",
            )
        _strip_row(strip, i, g, lrs, statuses, colour, best, seen)

    ax.set_xscale("log")
    ax.set_xlim(*xlim)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_ylabel({"r2": "validation R²", "accuracy": "validation accuracy"}.get(metric, metric))
    ax.set_title(f"{metric} vs learning rate — {report.get('name') or 'sweep'}")
    ax.grid(True, which="major", alpha=0.35)
    ax.tick_params(labelbottom=False)
    strip.set_ylim(n - 0.5, -0.5)
    strip.set_yticks(range(len(groups)), [_label(g, groups) for g in groups], fontsize=7.5)
    for i, tick in enumerate(strip.get_yticklabels()):
        tick.set_color(_colour(i))
    strip.grid(True, axis="x", which="major", alpha=0.35)
    strip.set_xlabel("learning rate")
    strip.set_title("zone, best LR and status per LR", fontsize=8, loc="left", color="#333333")

    handles, labels = ax.get_legend_handles_labels()
    keys = {
        "zone": (Patch(color=ZONE_COLOUR, alpha=0.5, lw=0), "Goldilocks zone"),
        "best": (Line2D([], [], ls="", marker="*", ms=12, color="white", mec="black"), "best LR"),
        "converged": (Line2D([], [], ls="", marker="o", ms=4, color="#444444"), "converged"),
        **dict(zip(STATUS_STYLE, _status_handles(set(STATUS_STYLE)), strict=True)),
    }
    extra = [v for k, v in keys.items() if k in seen]
    if handles and len(handles) > 6:  # many groups: a wide legend under the figure instead
        fig.legend(
            [*handles, *(h for h, _ in extra)],
            [*labels, *(lab for _, lab in extra)],
            loc="outside lower center",
            ncols=4,
            fontsize=8,
            frameon=False,
        )
    elif handles:
        legend_right(ax, [*handles, *(h for h, _ in extra)], [*labels, *(lab for _, lab in extra)])
    else:
        ax.text(0.5, 0.5, f"no finite {metric}", ha="center", transform=ax.transAxes)
    return fig


def _within(vals: np.ndarray, ylim: tuple[float, float]) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(vals) & (vals >= ylim[0]) & (vals <= ylim[1])


def _strip_row(strip, row, g, lrs, statuses, colour, best, seen) -> None:
    zone = _zone(g)
    if zone:
        seen.add("zone")
        lo, hi = _zone_span(*zone)
        strip.add_patch(
            Rectangle(
                (lo, row - 0.38),
                hi - lo,
                0.76,
                color=ZONE_COLOUR,
                alpha=0.5,
                lw=0,
                zorder=0,
                gid="zone",
            )
        )
    ok = np.array([s == "converged" for s in statuses], dtype=bool)
    if ok.any():
        seen.add("converged")
        strip.plot(
            lrs[ok],
            np.full(int(ok.sum()), row),
            ls="",
            marker="o",
            ms=4,
            color=colour,
            zorder=3,
            gid="converged",
        )
    for status, (marker, mcolour, _) in STATUS_STYLE.items():
        mask = np.array([s == status for s in statuses], dtype=bool)
        if mask.any():
            seen.add(status)
            strip.plot(
                lrs[mask],
                np.full(int(mask.sum()), row),
                ls="",
                marker=marker,
                ms=6,
                mew=1.8 if status == "diverged" else 1.0,
                color=mcolour,
                zorder=3,
                gid=status,
                **_fill(status),
            )
    if np.isfinite(best) and best > 0:
        seen.add("best")
        _best_star(strip, best, row, colour, size=12)


def plot_metric_vs_lr(report: dict, path: Path) -> Path:
    """The headline validation metric vs learning rate, diverged LRs marked, and a status strip
    (zone, best LR, status per LR) with one row per group."""
    return _save(metric_vs_lr_figure(report), path)
