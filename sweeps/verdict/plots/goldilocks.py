"""The Goldilocks picture: best validation loss vs LR per group, with its zone, edge and best LR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from sweeps.verdict.plots.style import (
    EDGE_COLOUR,
    FIGSIZE,
    STATUS_STYLE,
    ZONE_COLOUR,
    _best_star,
    _colour,
    _curve,
    _edge_lr,
    _figure,
    _finite,
    _fmt,
    _group_lanes,
    _label,
    _lr_limits,
    _mark_statuses,
    _plain_log_ticks,
    _save,
    _status_handles,
    _y_limits,
    _zone,
    _zone_span,
)


def goldilocks_figure(report: dict) -> Figure:
    """One panel per group on a shared log-LR axis: mean best validation loss vs LR, the
    group's zone band, best LR, stability edge and statuses; one legend for all panels."""
    pairs = _group_lanes(report)
    groups = [g for g, _ in pairs]
    curves = [_curve(g, lanes) for g, lanes in pairs]

    # Shared y: what did not diverge sets the range. A diverged LR's loss (1e4, or NaN) is not
    # drawn on the curve at all: it is a red x on the strip at the top of the panel.
    shown = [
        float(y)
        for g, (_, ys, _, st) in zip(groups, curves, strict=True)
        if not g.get("lr_free")
        for y, s in zip(ys, st, strict=True)
        if s != "diverged" and np.isfinite(y)
    ]
    shown += [
        float(y)
        for g in groups
        if g.get("lr_free")
        for y in _finite([g.get("best_val_loss")])
        if np.isfinite(y)
    ]
    log_y = bool(shown) and min(shown) > 0 and max(shown) / min(shown) > 3
    any_strip = any("diverged" in st for _, _, _, st in curves) or any(
        (~np.isfinite(ys)).any() for _, ys, _, _ in curves
    )
    ylim = _y_limits(shown, log_y, any_strip)
    xlim = _lr_limits(
        [
            x
            for g, (lrs, *_) in zip(groups, curves, strict=True)
            if not g.get("lr_free")
            for x in lrs
        ]
    )

    heights = [0.45 if g.get("lr_free") else 1.0 for g in groups] or [1.0]
    row = 1.5 if len(heights) <= 5 else 1.1  # inches per panel; many groups, lower panels
    fig = _figure((FIGSIZE[0], max(4.0, 1.25 + row * sum(heights))))
    axes = fig.subplots(
        len(heights),
        1,
        sharex=True,
        sharey=True,
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )[:, 0]
    seen: set[str] = set()  # which marker kinds were drawn, for the one legend
    for i, (ax, g, (lrs, losses, std, statuses), (_, lanes)) in enumerate(
        zip(axes, groups, curves, pairs, strict=False)
    ):
        colour = _colour(i)
        rank = g.get("rank")
        ax.set_title(
            (f"#{rank}  " if rank else "") + _label(g, groups),
            loc="left",
            fontsize=9,
            fontweight="bold",
            color=colour,
        )
        ax.grid(True, which="major", alpha=0.3)
        if g.get("lr_free"):
            _draw_lr_free(ax, g, losses, colour, seen)
            continue
        _draw_group(ax, g, lrs, losses, std, statuses, colour, xlim, seen)
        _mark_refined(ax, lanes, colour, seen)

    if not groups:
        axes[0].text(0.5, 0.5, "no groups", ha="center", va="center", transform=axes[0].transAxes)
    axes[0].set_xscale("log")
    axes[0].set_xlim(*xlim)
    if log_y:
        axes[0].set_yscale("log")
        _plain_log_ticks(axes[0].yaxis, *ylim)
    axes[0].set_ylim(*ylim)
    axes[-1].set_xlabel("learning rate")
    fig.supylabel("best validation loss (mean over seeds)", fontsize=10)
    fig.suptitle(f"Goldilocks zone — {report.get('name') or 'sweep'}")
    _goldilocks_legend(fig, seen)
    return fig


def _draw_group(ax, g, lrs, losses, std, statuses, colour, xlim, seen) -> None:
    div = np.array([s == "diverged" for s in statuses], dtype=bool)
    ys = np.where(div, np.nan, losses)  # NaN breaks the line at a diverged LR
    zone = _zone(g)
    if zone:
        seen.add("zone")
        ax.axvspan(*_zone_span(*zone), color=ZONE_COLOUR, alpha=0.35, lw=0, zorder=0, gid="zone")
    edge = _edge_lr(g)
    if edge is not None:
        seen.add("edge")
        ax.axvline(edge, color=EDGE_COLOUR, ls="--", lw=1.4, zorder=1, gid="edge")
        ax.axvspan(edge, xlim[1], color=EDGE_COLOUR, alpha=0.05, lw=0, zorder=0, gid="beyond_edge")
    band = np.isfinite(ys) & (std > 0)
    if band.any():
        seen.add("spread")
        lo = np.where(band, ys - std, np.nan)
        lo = np.where(lo > 0, lo, ys / 2)  # a log axis cannot show a band below zero
        ax.fill_between(
            lrs, lo, np.where(band, ys + std, np.nan), color=colour, alpha=0.18, lw=0, gid="spread"
        )
    if np.isfinite(ys).any():
        seen.add("curve")
        ax.plot(lrs, ys, "-o", color=colour, lw=1.8, ms=3.5, zorder=3, gid="curve")
    _mark_statuses(ax, lrs, ys, statuses, seen)
    best = _finite([g.get("best_lr")])[0]
    best_y = _finite([g.get("best_val_loss")])[0]
    on_curve = np.isfinite(ys) & np.isclose(lrs, best, rtol=1e-6)
    if on_curve.any():  # the curve's own point, so the star sits on the line
        best_y = ys[on_curve][0]
    if np.isfinite(best) and best > 0 and np.isfinite(best_y):
        seen.add("best")
        _best_star(ax, best, best_y, colour, size=16)
    # What the panel says, in words, top right: best LR, zone, edge.
    parts = [f"best {_fmt(best)}" if np.isfinite(best) else "no LR trained cleanly"]
    if np.isfinite(best) and np.isfinite(best_y):
        parts[0] += f" (loss {best_y:.2g})"
    if zone:
        parts.append(f"zone {_fmt(zone[0])}–{_fmt(zone[1])}")
    stable, first_div, spiked = _finite(
        [g.get("max_stable_lr"), g.get("min_diverged_lr"), g.get("first_unstable_lr")]
    )
    words = [f"stable ≤ {_fmt(stable)}"] if np.isfinite(stable) else []
    if np.isfinite(spiked):
        words.append(f"unstable at {_fmt(spiked)}")
    if g.get("rounds", 1) > 1 and g.get("edge_ratio"):  # refined: the edge as a bracket
        below = _finite([g.get("max_undiverged_lr")])[0]
        parts.append(f"edge {_fmt(below)}–{_fmt(first_div)} (×{g['edge_ratio']:.2f})")
    elif np.isfinite(first_div):
        words.append(f"diverged ≥ {_fmt(first_div)}")
    elif not div.any() and np.isfinite(lrs).any():
        words.append(f"no divergence up to {_fmt(float(np.nanmax(lrs)))}")
    if words:
        parts.append(", ".join(words))
    erratic = _finite(g.get("erratic_above_edge"))
    if np.isfinite(erratic).any():
        parts.append("erratic above: " + ", ".join(_fmt(x) for x in erratic if np.isfinite(x)))
    if g.get("edge") in ("low", "high"):
        parts.append(f"best at the {g['edge']} end of the range")
    ax.set_title("  ·  ".join(parts), loc="right", fontsize=8, color="#333333")
    if not np.isfinite(ys).any():
        ax.text(
            0.5,
            0.45,
            "every LR diverged" if div.all() else "no finite validation loss",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="grey",
            fontsize=8,
        )


def _mark_refined(ax, lanes: list[dict], colour, seen) -> None:
    """A tick on the panel's floor at each LR a refinement round added (search.refine)."""
    refined = sorted({lane["learning_rate"] for lane in lanes if lane.get("round", 1) > 1})
    if not refined:
        return
    seen.add("refined")
    ax.plot(
        refined, [0.02] * len(refined), ls="", marker="|", ms=8, mew=1.2, color=colour,
        transform=ax.get_xaxis_transform(), zorder=4, gid="refined",
    )  # fmt: skip


def _draw_lr_free(ax, g, losses, colour, seen) -> None:
    y = _finite([g.get("best_val_loss")])[0]
    if np.isnan(y) and np.isfinite(losses).any():
        y = float(np.nanmin(losses))
    if np.isfinite(y):
        seen.add("lr_free")
        ax.axhline(y, color=colour, ls="--", lw=1.8, gid="lr_free")
    note = f"sets its own step size: best val loss {y:.3g}" if np.isfinite(y) else "no finite loss"
    ax.set_title(note, loc="right", fontsize=8, color="#333333")


def _goldilocks_legend(fig: Figure, seen: set[str]) -> None:
    keys = {
        "curve": (
            Line2D([], [], color="#444444", marker="o", ms=3.5, lw=1.8),
            "best val loss per LR",
        ),
        "spread": (Patch(color="#444444", alpha=0.18, lw=0), "± std over seeds"),
        "zone": (Patch(color=ZONE_COLOUR, alpha=0.35, lw=0), "Goldilocks zone"),
        "best": (
            Line2D([], [], ls="", marker="*", ms=12, color="white", mec="black"),
            "best LR",
        ),
        "edge": (Line2D([], [], color=EDGE_COLOUR, ls="--", lw=1.4), "stability edge"),
        "refined": (
            Line2D([], [], ls="", marker="|", ms=8, mew=1.2, color="#444444"),
            "LR added by refinement",
        ),
        **{k: v for k, v in zip(STATUS_STYLE, _status_handles(set(STATUS_STYLE)), strict=True)},
        "lr_free": (Line2D([], [], color="#444444", ls="--", lw=1.8), "LR-free optimizer"),
    }
    shown = [v for k, v in keys.items() if k in seen]
    if shown:
        fig.legend(
            [h for h, _ in shown],
            [lab for _, lab in shown],
            loc="outside lower center",
            ncols=min(len(shown), 6),  # two rows at most, every status shown
            fontsize=8.5,
            frameon=False,
        )


def plot_goldilocks(report: dict, path: Path) -> Path:
    """Best validation loss vs learning rate, one panel per group, zones and edges marked."""
    return _save(goldilocks_figure(report), path)


# --- training curves --------------------------------------------------------------------
