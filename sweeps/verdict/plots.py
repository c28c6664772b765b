"""Pictures of a sweep: the Goldilocks curve, training curves, metric vs LR and the LR finder.

Every picture reads the plain report dict (the sweep's report.json). Each has a `*_figure`
function that draws it into a `Figure` (what the tests inspect) and a `plot_*` function that
writes that figure to one PNG. Only matplotlib's object API is used (`Figure` +
`FigureCanvasAgg`), never pyplot: pyplot keeps global state (current figure, backend), which is
neither thread-safe inside a server nor leak-free, and we never touch the process-wide backend.

One visual language in every picture:
- a group (optimizer, schedule, fixed args) has one colour, from blues, greens and greys;
- red, orange and purple belong to the statuses only (diverged x, unstable triangle up,
  stagnated triangle down), so a marker is never mistaken for a series;
- the Goldilocks zone is a gold band, the stability edge a dashed red line, the best LR a star.

Artists that carry meaning get a `gid` ("zone", "edge", "best", "diverged", "unstable",
"stagnated", "curve", ...), so a test can find them without guessing from colours.

Reports come from JSON, so any number can be None (a NaN or inf when written): everything goes
through `_finite`, which turns those into NaN, and NaN points are skipped.
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
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

FIGSIZE = (9.0, 5.5)
DPI = 110
CAP_FACTOR = 3.0  # training curves: the y-range stops at 3x the loss the lanes started from
STATUS_ORDER = ("converged", "stagnated", "unstable", "diverged")  # worst last
STATUS_STYLE = {  # marker, colour, legend label; these colours are used by nothing else
    "diverged": ("x", "#d62728", "diverged"),
    "unstable": ("^", "#ff7f0e", "unstable"),
    "stagnated": ("v", "#9467bd", "stagnated"),
}
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


def _edge_lr(group: dict) -> float | None:
    """Where the stability edge is drawn: between max_stable_lr and min_diverged_lr."""
    stable, diverged = _finite([group.get("max_stable_lr"), group.get("min_diverged_lr")])
    if not (np.isfinite(diverged) and diverged > 0):
        return None
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
        (Line2D([], [], ls="", marker=m, color=c, ms=7, mew=2), lab)
        for s, (m, c, lab) in STATUS_STYLE.items()
        if s in seen
    ]


def _mark_statuses(
    ax: Any, lrs: np.ndarray, ys: np.ndarray, statuses: list[str], seen: set
) -> None:
    """Unstable and stagnated markers on the curve; diverged LRs as red x's on the top strip."""
    for status in ("unstable", "stagnated"):
        marker, colour, _ = STATUS_STYLE[status]
        mask = np.array([s == status for s in statuses], dtype=bool)
        if mask.any():
            seen.add(status)
            on = mask & np.isfinite(ys)
            ax.plot(lrs[on], ys[on], ls="", marker=marker, color=colour, ms=7, zorder=4, gid=status)
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
    stable, first_div = _finite([g.get("max_stable_lr"), g.get("min_diverged_lr")])
    if g.get("rounds", 1) > 1 and g.get("edge_ratio"):  # refined: the edge as a bracket
        parts.append(f"edge {_fmt(stable)}–{_fmt(first_div)} (×{g['edge_ratio']:.2f})")
    elif np.isfinite(first_div):
        parts.append(
            (f"stable ≤ {_fmt(stable)}, " if np.isfinite(stable) and stable < first_div else "")
            + f"diverged ≥ {_fmt(first_div)}"
        )
    elif np.isfinite(stable):
        parts.append(f"no divergence up to {_fmt(stable)}")
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
            ncols=min(len(shown), 5),
            fontsize=8.5,
            frameon=False,
        )


def plot_goldilocks(report: dict, path: Path) -> Path:
    """Best validation loss vs learning rate, one panel per group, zones and edges marked."""
    return _save(goldilocks_figure(report), path)


# --- training curves --------------------------------------------------------------------


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
        ax.legend(
            [*handles, *(h for h, _ in extra)],
            [*labels, *(lab for _, lab in extra)],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8.5,
            frameon=False,
        )
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
            )
    if np.isfinite(best) and best > 0:
        seen.add("best")
        _best_star(strip, best, row, colour, size=12)


def plot_metric_vs_lr(report: dict, path: Path) -> Path:
    """The headline validation metric vs learning rate, diverged LRs marked, and a status strip
    (zone, best LR, status per LR) with one row per group."""
    return _save(metric_vs_lr_figure(report), path)


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
        ax.legend(
            [*handles, *(h for h, _ in extra)],
            [*labels, *(lab for _, lab in extra)],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8.5,
            frameon=False,
        )
    else:
        ax.text(0.5, 0.5, "no curves", ha="center", va="center", transform=ax.transAxes)
    return fig


def plot_lr_find(result: dict, path: Path) -> Path:
    """LR range test: smoothed loss vs LR per optimizer (raw faint), suggestions marked."""
    return _save(lr_find_figure(result), path)


__all__ = [
    "goldilocks_figure",
    "lr_find_figure",
    "metric_vs_lr_figure",
    "plot_goldilocks",
    "plot_lr_find",
    "plot_metric_vs_lr",
    "plot_training_curves",
    "training_curves_figure",
    "write_sweep_plots",
]
