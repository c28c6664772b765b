"""What a sweep looks like in a terminal: the verdict table, the progress bar, the MLflow hint.

Light (rich only): the service's client commands print verdicts with it too.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sweeps.verdict.words import (
    COUNTS_HEADER,
    STATUS_LEGEND,
    TRANSFER_HEADER,
    fmt,
    min_diverged_text,
    schedule_text,
    stability_note,
    status_counts_text,
    transfer_rows,
)

# Outside a terminal (CI logs, pipes) rich would wrap the verdict table at 80 columns.
console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


STAGE_TEXT = {
    "starting": "starting (MLflow, Ray, compiles ahead)",
    "compiling": "compiling the trials' programs",
}


def progress_text(p) -> str:
    """What the sweep does before it trains; then lane-steps (what the bar measures, so a
    one-trial sweep moves too) and trials."""
    if p.phase:
        return p.phase
    if p.stage in STAGE_TEXT:
        return STAGE_TEXT[p.stage]
    running = f", {p.trials_running} running" if p.trials_running else ""
    steps = f"{p.lane_steps_done:,}/{p.lane_steps_total:,} lane-steps"
    return f"{steps} · trials {p.trials_done}/{p.trials_total}{running}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def refined(report: dict) -> bool:
    """Whether refinement rounds ran (the table then shows the brackets they reached)."""
    return any(g.get("rounds", 1) > 1 for g in report["groups"])


def edge_text(g: dict) -> str:
    """The stability edge as a bracket: "0.287–0.316 (×1.10)"."""
    if g.get("edge_ratio") is None:
        return "—"
    return f"{fmt(g.get('max_undiverged_lr'))}–{fmt(g['min_diverged_lr'])} (×{g['edge_ratio']:.2f})"


def bracket_text(g: dict) -> str:
    b = g.get("best_lr_bracket")
    return f"{fmt(b[0])}–{fmt(b[1])}" if b else "—"


def print_verdict(report: dict) -> None:
    table = Table(
        title=f"Goldilocks verdict — {report['name']}",
        title_justify="left",
        caption=STATUS_LEGEND,
        caption_justify="left",
    )
    for col in ("#", "optimizer", "schedule", "best LR", "zone", "max stable", "min diverged"):
        table.add_column(col)
    rounds = refined(report)
    if rounds:
        for col in ("edge", "best LR within", "rounds"):
            table.add_column(col)
    table.add_column("best val loss", justify="right")
    table.add_column(f"val {report.get('metric', 'metric')}", justify="right")
    table.add_column(COUNTS_HEADER, justify="right")
    for g in report["groups"]:
        zone = g["zone"]
        zone_text = f"{fmt(zone['low'])} – {fmt(zone['high'])}" if zone else "—"
        best = fmt(g["best_lr"]) + (f" [yellow](edge: {g['edge']})[/]" if g["edge"] else "")
        name = g["optimizer"] + (" (LR-free)" if g["lr_free"] else "")
        table.add_row(
            fmt(g["rank"], "d"),
            name,
            schedule_text(g),
            best,
            zone_text,
            fmt(g["max_stable_lr"]),
            min_diverged_text(g),
            *([edge_text(g), bracket_text(g), str(g.get("rounds", 1))] if rounds else []),
            fmt(g["best_val_loss"], ".4f"),
            fmt(g["best_val_metric"], ".4f"),
            status_counts_text(g),
        )
    console.print(table)
    w = report.get("winner")
    if w:
        seeds = w.get("seeds_at_lr", 1)
        basis = f"best of {seeds} seeds; the table shows their mean" if seeds > 1 else ""
        console.print(
            f"[bold green]winner:[/] {w['optimizer']} · {w['schedule']} at LR {w['learning_rate']:.3g} "
            f"(seed {w['seed']}{'; ' + basis if basis else ''}): val loss "
            f"{fmt(w['best_val_loss'], '.4f')}, {report.get('metric', 'metric')} "
            f"{fmt(w['val_metric'], '.4f')}"
        )
    for g in report["groups"]:
        note = stability_note(g)
        if note:
            console.print(f"[yellow]note:[/] {g['optimizer']} · {schedule_text(g)}: {note}.")
        erratic = g.get("erratic_above_edge") or []
        if erratic:
            console.print(
                f"[yellow]note:[/] {g['optimizer']} · {schedule_text(g)}: "
                f"{', '.join(fmt(lr) for lr in erratic)} ended finite above the stability edge "
                f"({fmt(g['min_diverged_lr'])}); not trustworthy, so not counted as stable."
            )
        if g["edge"]:
            console.print(
                f"[yellow]warning:[/] {g['optimizer']} · {schedule_text(g)}: the best LR is at the "
                f"{g['edge']} edge of the searched range; widen its range (for this "
                f"optimizer alone: search.optimizer: [{{name: {g['optimizer']}, "
                "learning_rate: {min: ..., max: ...}}])."
            )
    print_transfer(report)


def print_transfer(report: dict) -> None:
    """The transfer table under the verdict (transfer.steps), each group's note below it."""
    rows = transfer_rows(report)
    if not rows:
        return
    table = Table(title="Transfer — the best LR at the target", title_justify="left")
    for col in TRANSFER_HEADER:
        table.add_column(col)
    for cells, _ in rows:
        table.add_row(*cells)
    console.print(table)
    for _, note in rows:
        console.print(f"[yellow]transfer:[/] {note}.")


def print_mlflow(report: dict, ui_url: str | None = None) -> None:
    """Where the runs are: the tracking URI, and links that open the UI's runs view (or the
    `mlflow ui` command that serves a database first). `ui_url`: GOLDILOCKS_MLFLOW_UI_URL."""
    info = report.get("mlflow")
    if not info:
        return
    from sweeps.tracking.uri import ui_links

    links = ui_links(
        info.get("tracking_uri"), info.get("experiment_id"), info.get("parent_run_id"), ui_url
    )
    for line in mlflow_lines(info, links):
        console.print(line, soft_wrap=True, highlight=False, markup=False)


def mlflow_lines(info: dict, links: dict) -> list[str]:
    """The MLflow block of a sweep's output, as plain lines (each unwrapped: a URL stays whole
    and clickable). `links` as `sweeps.tracking.uri.ui_links` gives them."""
    lines = [
        f"MLflow: experiment {info.get('experiment_id')}, parent run {info.get('parent_run_id')}",
        f"  tracking URI: {links.get('tracking_uri')}",
    ]
    if links.get("ui_command"):
        lines.append(f"  open the UI: {links['ui_command']}   (then the links below)")
    if links.get("experiment_url"):
        lines.append(f"  runs:  {links['experiment_url']}")
    if links.get("parent_run_url"):
        lines.append(f"  sweep: {links['parent_run_url']}")
    return lines


def print_lr_find(result: dict) -> None:
    table = Table(title="LR range test: suggestions", title_justify="left")
    for col in ("optimizer", "steepest", "valley"):
        table.add_column(col)
    for opt, s in result["suggestions"].items():
        table.add_row(opt, fmt(s["steepest"]), fmt(s["valley"]))
    console.print(table)
