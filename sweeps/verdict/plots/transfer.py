"""transfer.png: per axis, the best LR at each swept value and the trend carried to the target.

Log-log axes. Per group (its colour, as in every picture): the best LR at each value (a dot)
with its bracket (a vertical bar: the tested LRs either side), the fitted power law through
them as a line, carried on dashed to the target with its 95 % band, the prediction at the
target (a diamond with its interval; hollow where it is not reliable; where the loss curves or
the slowing trend predicted, the line's extension is faded and a dash-dot path runs from the
longest swept value's best LR to the prediction, the band around it), the direct check at the
target where one was trained (a star), and the stability edge where it was found (thin red
ticks: the LR the group must stay under). A dotted vertical line marks the target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullFormatter

from sweeps.verdict.plots.style import (
    EDGE_COLOUR,
    _colour,
    _figure,
    _finite,
    _plain_log_ticks,
    _save,
)

AXIS_LABELS = {"steps": "training steps (horizon)", "batch_size": "batch size"}
METHOD_LABELS = {"loss_curves": "predicted from every LR's loss curve",
                 "slowing": "the slowing trend"}  # fmt: skip


def _towards(value: float, lr: float, target: float, predicted: float):
    """The straight log-log path from a swept value's best LR to the prediction at target."""
    return lambda x: lr * (predicted / lr) ** (np.log(x / value) / np.log(target / value))


def transfer_figure(report: dict, axis: str = "steps"):
    section = (report.get("transfer") or {}).get(axis)
    fig = _figure((9.0, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    if not section:
        ax.text(0.5, 0.5, "no transfer section", ha="center", transform=ax.transAxes)
        return fig
    target = float(section["target"])
    values = [float(v) for v in section["values"]]
    lo_x, hi_x = min(values + [target]) / 1.4, max(values + [target]) * 1.4
    xs = np.geomspace(min(values), max(values), 50)
    ext = (
        np.geomspace(max(values), target, 50)
        if target > max(values)
        else np.geomspace(target, min(values), 50)
    )
    ys_all: list[float] = []
    for i, g in enumerate(section["groups"]):
        colour = _colour(i)
        label = f"{g['optimizer']} · {g['schedule']}"
        pts = [p for p in g["points"] if p.get("best_lr")]
        v = _finite([p["value"] for p in pts])
        best = _finite([p["best_lr"] for p in pts])
        lo = _finite([p["bracket"][0] for p in pts])
        hi = _finite([p["bracket"][1] for p in pts])
        ax.errorbar(v, best, yerr=[best - lo, hi - best], fmt="o", color=colour, ms=6, capsize=4,
                    lw=1.5, label=f"{label}: best LR (bar: tested neighbours)", gid="best_points")  # fmt: skip
        ys_all += [*lo, *hi]
        edges = [p for p in g["points"] if p.get("edge_lr")]
        if edges:
            ax.scatter([p["value"] for p in edges], [p["edge_lr"] for p in edges], marker="_",
                       s=260, color=EDGE_COLOUR, lw=2, gid="edge", zorder=3,
                       label="stability edge" if i == 0 else None)  # fmt: skip
            ys_all += [p["edge_lr"] for p in edges]
        fit, pred = g.get("fit"), g["prediction"]
        by_line = pred.get("method", "power_law") == "power_law"
        if fit:
            line = lambda x, f=fit: np.exp(f["intercept"] + f["exponent"] * np.log(x))  # noqa: E731
            ax.plot(xs, line(xs), color=colour, lw=1.8, gid="fit")
            ax.plot(ext, line(ext), color=colour, lw=1.2, ls="--", gid="fit_extended",
                    alpha=1.0 if by_line else 0.45,
                    label=None if by_line else f"{label}: power law carried on")  # fmt: skip
        if fit and not by_line and pts:  # another method predicted: from the longest point to it
            far = max(pts, key=lambda p: p["value"])
            line = _towards(far["value"], far["best_lr"], target, pred["best_lr"])
            ax.plot(ext, line(ext), color=colour, lw=1.6, ls="-.", gid="method_path",
                    label=f"{label}: {METHOD_LABELS.get(pred['method'], pred['method'])}")  # fmt: skip
            ys_all.append(pred.get("power_law_lr"))  # where the faded line ends, in view
        if pred.get("best_lr") and pred.get("interval"):
            p_lo, p_hi = pred["interval"]
            ax.errorbar([target], [pred["best_lr"]], yerr=[[pred["best_lr"] - p_lo], [p_hi - pred["best_lr"]]],
                        fmt="D", ms=9, capsize=6, lw=2, color=colour,
                        mfc=colour if pred["reliable"] else "white", gid="prediction",
                        label=f"{label}: predicted at {target:g}" + ("" if pred["reliable"] else " (not reliable)"))  # fmt: skip
            ys_all += [p_lo, p_hi]
            if fit:  # the band: the interval's width carried along the extension, in log
                frac = (
                    np.log(ext / max(values)) / np.log(target / max(values))
                    if target > max(values)
                    else 1.0
                )
                # from the fit at the last swept value out to the prediction's own interval
                pred_lr = pred["best_lr"]
                lower = line(ext) * (p_lo / pred_lr) ** frac
                upper = line(ext) * (p_hi / pred_lr) ** frac
                ax.fill_between(ext, lower, upper, color=colour, alpha=0.12, lw=0, gid="band")
        check = g.get("verification") or {}
        if check.get("best_lr"):
            # beside the prediction (not on it): the direct sweep's best LR at the target
            ax.plot([target * 1.12], [check["best_lr"]], ls="", marker="*", ms=15, color=colour,
                    mec="black", mew=0.8, zorder=5, gid="direct",
                    label=f"{label}: direct sweep at {target:g}")  # fmt: skip
            err = check.get("prediction_error")
            ax.annotate(f"direct {check['best_lr']:.3g}" + ("" if err is None else f"\nlog2 error {err:+.2f}"),
                        (target * 1.12, check["best_lr"]), textcoords="offset points", xytext=(10, -4),
                        fontsize=9, color=colour)  # fmt: skip
            ys_all.append(check["best_lr"])
    ax.axvline(target, color="#555555", ls=":", lw=1.2, gid="target")
    ax.text(target, 0.98, f"target {target:g} ", transform=ax.get_xaxis_transform(), ha="right",
            va="top", fontsize=9, color="#555555")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo_x, hi_x * 2.0)
    ys = [y for y in ys_all if y and np.isfinite(y) and y > 0]
    if ys:
        ax.set_ylim(min(ys) / 1.6, max(ys) * 1.6)
        _plain_log_ticks(ax.yaxis, min(ys) / 1.6, max(ys) * 1.6)
    _plain_log_ticks(ax.xaxis, lo_x, hi_x * 2.0)
    ax.set_xticks(sorted(set(values + [target])))  # the swept values and the target, labelled
    ax.xaxis.set_minor_formatter(NullFormatter())
    what = {"steps": "horizon", "batch_size": "batch size"}.get(axis, f"model {axis}")
    ax.set_xlabel(AXIS_LABELS.get(axis, f"model {axis}"))
    ax.set_ylabel("best learning rate (final validation loss)")
    ax.set_title(
        f"Transfer: the best LR at each {what}, and the trend carried to the target", fontsize=11
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_transfer(report: dict, path: Path, axis: str = "steps") -> Path:
    return _save(transfer_figure(report, axis), path)
