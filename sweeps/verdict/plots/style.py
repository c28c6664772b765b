"""What every picture shares: the visual language (status markers, colours, the zone, the
edge, the best star), number handling for JSON reports, and saving a figure."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

FIGSIZE = (9.0, 5.5)
DPI = 110
CAP_FACTOR = 3.0  # training curves: the y-range stops at 3x the loss the lanes started from
# As sweeps/verdict/analysis.py's (not imported: that pulls in JAX), worst last.
STATUS_ORDER = (
    "converged", "too_slow", "stagnated", "pruned", "too_high", "unstable", "diverged"
)  # fmt: skip
STATUS_STYLE = {  # marker, colour, legend label; these colours are used by nothing else
    "diverged": ("x", "#d62728", "diverged"),
    "unstable": ("^", "#ff7f0e", "unstable (spiked)"),
    "too_high": ("^", "#ff7f0e", "too high (no spike)"),
    "stagnated": ("v", "#9467bd", "stagnated"),
    "too_slow": ("v", "#9467bd", "too slow"),
    "pruned": ("s", "#8c564b", "pruned (stopped early)"),
}
HOLLOW = frozenset({"too_high", "too_slow", "pruned"})  # drawn unfilled: the milder of the two
# Group colours: blues, greens and greys only, so none is close to a status colour.
SERIES = ("#1f77b4", "#2ca02c", "#17becf", "#393b79", "#006d2c", "#525252", "#6baed6", "#74c476")
ZONE_COLOUR = "#f2c12e"  # gold, drawn light
EDGE_COLOUR = STATUS_STYLE["diverged"][1]
DIVERGED_Y = 0.92  # diverged LRs sit on a strip at this height (axes fraction) of their panel
DATA_TOP = 0.82  # ... and the drawn data stays below this height


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


def _colour(index: int) -> str:
    """A group's colour, by its index in the report: the same in every picture."""
    return SERIES[index % len(SERIES)]


def _fmt(x: float) -> str:
    """A number in few characters: 0.003, 0.25, 3, 100, 1e-05 (two significant digits)."""
    if not np.isfinite(x):
        return "–"
    if 1e-3 <= abs(x) < 1e4:
        text = f"{x:.2g}"
        return f"{float(text):.0f}" if "e" in text else text
    return f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e")


def _plain_log_ticks(axis: Any, lo: float, hi: float) -> None:
    """Log-axis labels as plain numbers (0.1, 1, 10); with under ~1.5 decades shown, the
    2, 3 and 5 in between are labelled too, or a panel could show a single tick label."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if lo > 0 and hi > lo and math.log10(hi / lo) < 1.5:
        axis.set_minor_locator(LogLocator(subs=(2.0, 3.0, 5.0)))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        axis.set_minor_formatter(NullFormatter())


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
    """ "adam · constant"; when two groups would share that, the fixed args that tell them
    apart are added ("sgd · constant (momentum=0.9)")."""
    opt, sched = group.get("optimizer"), group.get("schedule")
    base = f"{opt}" if group.get("lr_free") and sched in (None, "constant") else f"{opt} · {sched}"
    twins = [g for g in groups if (g.get("optimizer"), g.get("schedule")) == (opt, sched)]
    if len(twins) > 1:

        def args(g: dict) -> dict:
            return {**(g.get("optimizer_args") or {}), **(g.get("schedule_args") or {})}

        mine = args(group)
        differ = {k for t in twins for k in {*mine, *args(t)} if args(t).get(k) != mine.get(k)}
        shown = {k: v for k, v in mine.items() if k in differ} or mine
        base += " (" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + ")"
    return base + (" (LR-free)" if group.get("lr_free") else "")


def _zone(group: dict) -> tuple[float, float] | None:
    zone = group.get("zone") or {}
    low, high = _finite([zone.get("low"), zone.get("high")])
    return (
        (float(low), float(high))
        if np.isfinite(low) and np.isfinite(high) and high >= low > 0
        else None
    )


def _zone_span(low: float, high: float) -> tuple[float, float]:
    """A one-LR zone still gets a visible band: a quarter of a decade around it."""
    return (low / 10**0.125, high * 10**0.125) if high <= low * (1 + 1e-9) else (low, high)


def _fill(status: str) -> dict[str, Any]:
    return {"mfc": "none"} if status in HOLLOW else {}


def _edge_lr(group: dict) -> float | None:
    """Where the stability edge is drawn: between min_diverged_lr and the searched LR just
    below it (max_stable_lr may lie lower: an unstable LR is not called stable)."""
    stable, diverged = _finite([group.get("max_stable_lr"), group.get("min_diverged_lr")])
    if not (np.isfinite(diverged) and diverged > 0):
        return None
    searched = _finite((group.get("curve") or {}).get("learning_rate"))
    below = searched[np.isfinite(searched) & (searched > 0) & (searched < diverged)]
    if below.size:
        stable = float(below.max())
    if np.isfinite(stable) and 0 < stable < diverged:
        return float(math.sqrt(stable * diverged))
    return float(diverged)


def _best_star(ax: Any, x: float, y: float, colour: Any, *, size: float) -> None:
    """The best LR: a black-edged star in the group's colour (gid "best" for the tests)."""
    ax.plot(
        [x],
        [y],
        ls="",
        marker="*",
        ms=size,
        color=colour,
        mec="black",
        mew=0.8,
        zorder=5,
        gid="best",
    )


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


def _worst(statuses: Iterable[Any]) -> str:
    known = [s for s in statuses if s in STATUS_ORDER]
    return max(known, key=STATUS_ORDER.index) if known else "converged"


def _by_lr(lanes: list[dict], field: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Sorted LRs, the NaN-mean of `field` over the seeds of each, and each LR's worst status."""
    values: dict[float, list[float]] = {}
    statuses: dict[float, list[Any]] = {}
    for lane in lanes:
        lr = _finite([lane.get("learning_rate")])[0]
        if np.isfinite(lr) and lr > 0:
            values.setdefault(float(lr), []).append(_finite([lane.get(field)])[0])
            statuses.setdefault(float(lr), []).append(lane.get("status"))
    lrs = np.array(sorted(values), dtype=float)
    means = [math.nan if np.all(np.isnan(values[x])) else np.nanmean(values[x]) for x in lrs]
    return lrs, np.array(means, dtype=float), [_worst(statuses[x]) for x in lrs]


def _curve(group: dict, lanes: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A group's (learning rates, mean best val losses, their seed std, worst statuses), from
    the verdict's curve, or from the lanes when the report has none."""
    c = group.get("curve") or {}
    lrs = _finite(c.get("learning_rate"))
    if not len(lrs):
        lrs, losses, statuses = _by_lr(lanes, "best_val_loss")
        return lrs, losses, np.zeros(len(lrs)), statuses
    losses, std = _finite(c.get("val_loss")), _finite(c.get("val_loss_std"))
    if len(losses) != len(lrs):
        losses = np.full(len(lrs), np.nan)
    if len(std) != len(lrs):
        std = np.zeros(len(lrs))
    statuses = [str(s) for s in (c.get("status") or [])][: len(lrs)]
    return lrs, losses, np.nan_to_num(std), statuses + ["converged"] * (len(lrs) - len(statuses))


def _lr_limits(lrs: Iterable[float]) -> tuple[float, float]:
    """The shared LR axis: every LR of the report, a little padding either side."""
    arr = _finite(lrs)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (1e-4, 1e-1)
    pad = 10 ** (0.04 * max(math.log10(hi / lo), 1.0))
    return lo / pad, hi * pad


def _status_handles(seen: set[str]) -> list[tuple[Any, str]]:
    return [
        (Line2D([], [], ls="", marker=m, color=c, ms=7, mew=2, **_fill(s)), lab)
        for s, (m, c, lab) in STATUS_STYLE.items()
        if s in seen
    ]


def _mark_statuses(
    ax: Any, lrs: np.ndarray, ys: np.ndarray, statuses: list[str], seen: set
) -> None:
    """Unstable, too-high, stagnated, too-slow and pruned markers on the curve; diverged LRs as red x's
    on the top strip."""
    for status in ("unstable", "too_high", "stagnated", "too_slow", "pruned"):
        marker, colour, _ = STATUS_STYLE[status]
        mask = np.array([s == status for s in statuses], dtype=bool)
        if mask.any():
            seen.add(status)
            on = mask & np.isfinite(ys)
            ax.plot(
                lrs[on], ys[on], ls="", marker=marker, color=colour, ms=7, zorder=4, gid=status,
                **_fill(status),
            )  # fmt: skip
            if (mask & ~on).any():  # no finite value: on the strip, like a diverged LR
                ax.plot(
                    lrs[mask & ~on],
                    np.full(int((mask & ~on).sum()), DIVERGED_Y),
                    ls="",
                    marker=marker,
                    color=colour,
                    ms=7,
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                    zorder=4,
                    gid=f"{status}_no_value",
                    **_fill(status),
                )
    div = np.array([s == "diverged" for s in statuses], dtype=bool)
    if div.any():
        seen.add("diverged")
        marker, colour, _ = STATUS_STYLE["diverged"]
        ax.plot(
            lrs[div],
            np.full(int(div.sum()), DIVERGED_Y),
            ls="",
            marker=marker,
            color=colour,
            ms=8,
            mew=2,
            transform=ax.get_xaxis_transform(),  # x in data, y in axes fraction
            clip_on=False,
            zorder=4,
            gid="diverged",
        )


def _y_limits(values: list[float], log: bool, strip: bool) -> tuple[float, float]:
    """Limits around `values`; with `strip`, headroom above them for the diverged markers."""
    fwd, inv = (math.log10, lambda t: 10**t) if log else (float, float)
    if not values:
        return (0.1, 10.0) if log else (0.0, 1.0)
    a, b = fwd(min(values)), fwd(max(values))
    if b - a < 1e-9:
        pad = 0.15 if log else max(abs(b) * 0.1, 1e-3)
        a, b = a - pad, b + pad
    span = b - a
    bottom, top = a - 0.12 * span, b + 0.08 * span
    if strip:
        top = bottom + (b + 0.03 * span - bottom) / DATA_TOP
    return inv(bottom), inv(top)


# --- the Goldilocks curve ---------------------------------------------------------------


def legend_right(ax: Any, handles: list, labels: list) -> None:
    """A one-panel picture's legend, outside the axes on the right."""
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5,
              frameon=False)  # fmt: skip
