"""What a sweep looks like in a terminal: the verdict table, the progress bar, the MLflow hint.

Light (rich only): the service's client commands print verdicts with it too.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sweeps.verdict.words import TRANSFER_HEADER, TRANSFER_TITLE, fmt, verdict_table

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


def print_verdict(report: dict) -> None:
    """The verdict table (sweeps/verdict/words.py builds it), its winner and notes."""
    verdict = verdict_table(report)
    table = Table(
        title=verdict.title, title_justify="left", caption=verdict.legend, caption_justify="left"
    )
    for name, right in verdict.columns:
        table.add_column(name, justify="right" if right else "left")
    best = [name for name, _ in verdict.columns].index("best LR")
    for row, at_edge in zip(verdict.rows, verdict.edge_rows, strict=True):
        cells = [escape(c) for c in row]
        if at_edge:  # the "(edge: …)" marker in yellow
            lr, _, marker = cells[best].partition(" ")
            cells[best] = f"{lr} [yellow]{marker}[/]"
        table.add_row(*cells)
    console.print(table)
    if verdict.winner:
        console.print(f"[bold green]winner:[/] {escape(verdict.winner)}")
    for note in verdict.notes:
        console.print(f"[yellow]{note.level}:[/] {escape(note.group)}: {escape(note.text)}")
    if verdict.transfer:
        transfer = Table(title=TRANSFER_TITLE, title_justify="left")
        for name in TRANSFER_HEADER:
            transfer.add_column(name)
        for cells, _ in verdict.transfer:
            transfer.add_row(*(escape(c) for c in cells))
        console.print(transfer)
        for _, note in verdict.transfer:
            console.print(f"[yellow]transfer:[/] {escape(note)}.")


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
