"""Pictures of a sweep: the Goldilocks curve, training curves, metric vs LR and the LR finder.

Every picture reads the plain report dict (the sweep's report.json). Each has a `*_figure`
function that draws it into a `Figure` (what the tests inspect) and a `plot_*` function that
writes that figure to one PNG. Only matplotlib's object API is used (`Figure` +
`FigureCanvasAgg`), never pyplot: pyplot keeps global state (current figure, backend), which is
neither thread-safe inside a server nor leak-free, and we never touch the process-wide backend.

One visual language in every picture:
- a group (optimizer, schedule, fixed args) has one colour, from blues, greens and greys;
- red, orange and purple belong to the statuses only (diverged x; above the best, unstable
  triangle up, too_high the same hollow; below it, stagnated triangle down, too_slow the same
  hollow; pruned a hollow brown square), so a marker is never mistaken for a series;
- the Goldilocks zone is a gold band, the stability edge a dashed red line, the best LR a star.

Artists that carry meaning get a `gid` ("zone", "edge", "best", "diverged", "unstable",
"too_high", "stagnated", "too_slow", "pruned", "curve", ...), so a test can find them without guessing from colours.

Reports come from JSON, so any number can be None (a NaN or inf when written): everything goes
through `_finite`, which turns those into NaN, and NaN points are skipped.

The package: `style.py` (the shared language and helpers), `goldilocks.py`, `curves.py`,
`metric.py`, `lrfind.py`, `transfer.py` (one picture each).
"""

from __future__ import annotations

from pathlib import Path

from sweeps.verdict.plots.curves import plot_training_curves, training_curves_figure
from sweeps.verdict.plots.goldilocks import goldilocks_figure, plot_goldilocks
from sweeps.verdict.plots.lrfind import lr_find_figure, plot_lr_find
from sweeps.verdict.plots.metric import metric_vs_lr_figure, plot_metric_vs_lr
from sweeps.verdict.plots.style import STATUS_ORDER, STATUS_STYLE
from sweeps.verdict.plots.transfer import plot_transfer, transfer_figure

__all__ = [
    "STATUS_ORDER",
    "STATUS_STYLE",
    "goldilocks_figure",
    "lr_find_figure",
    "metric_vs_lr_figure",
    "plot_goldilocks",
    "plot_lr_find",
    "plot_metric_vs_lr",
    "plot_training_curves",
    "plot_transfer",
    "training_curves_figure",
    "transfer_figure",
    "write_sweep_plots",
]


def write_sweep_plots(report: dict, out_dir: Path) -> list[Path]:
    """The three sweep pictures into `out_dir`: goldilocks, training curves, metric vs LR."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_goldilocks(report, out_dir / "goldilocks.png"),
        plot_training_curves(report, out_dir / "training_curves.png"),
        plot_metric_vs_lr(report, out_dir / "metric_vs_lr.png"),
    ]
    for axis in report.get("transfer") or {}:  # transfer.png per axis (steps: transfer.png)
        name = "transfer.png" if axis == "steps" else f"transfer_{axis}.png"
        paths.append(plot_transfer(report, out_dir / name, axis))
    return paths


# --- LR range test ----------------------------------------------------------------------
