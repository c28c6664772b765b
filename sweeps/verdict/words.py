"""The verdict in words: what the console table, the Markdown table and notes say about a group.

Reads report.json's group dicts only (no JAX, no pandas): the service's client prints verdicts
with it too. Reports written before a status existed lack its count; it reads as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# One letter per status, in the order the table's lane counts list them: the low side (too
# slow, stagnated, pruned: stopped at a rung by search.prune), then the high side (too high, unstable, diverged).
STATUS_LETTERS = {
    "converged": "c",
    "too_slow": "l",
    "stagnated": "s",
    "pruned": "p",
    "too_high": "h",
    "unstable": "u",
    "diverged": "d",
}
COUNTS_HEADER = "lanes " + "/".join(STATUS_LETTERS.values())
STATUS_LEGEND = (
    "lanes: c converged, l too slow (improved, stopped short of the best), s stagnated (barely "
    "moved), p pruned (stopped early, far behind the best), h too high (trained without a spike, ended far from the best), u unstable "
    "(spiked, recovered), d diverged"
)


def fmt(v: Any, spec: str = ".3g") -> str:
    return "—" if v is None else format(v, spec)


def schedule_text(group: dict) -> str:
    """The group's schedule, with its horizon or batch size where the sweep trained several
    (transfer: "cosine · 400 steps", "cosine · batch 64")."""
    horizon = (group.get("schedule_args") or {}).get("horizon")
    batch, width = group.get("batch_size"), group.get("model_width")
    return (
        group["schedule"]
        + (f" · {horizon:.0f} steps" if horizon is not None else "")
        + (f" · batch {batch}" if batch is not None else "")
        + (f" · width {width}" if width is not None else "")
    )


def status_counts_text(group: dict) -> str:
    counts = group.get("status_counts") or {}
    return "/".join(str(counts.get(status, 0)) for status in STATUS_LETTERS)


def searched_top(group: dict) -> float | None:
    """The largest LR the group searched (its curve's last), None for an LR-free optimizer."""
    lrs = [lr for lr in (group.get("curve") or {}).get("learning_rate") or [] if lr is not None]
    return None if group.get("lr_free") or not lrs else max(lrs)


def min_diverged_text(group: dict) -> str:
    """The first diverged LR, or "no divergence up to <max LR>" when no LR of the group
    diverged anywhere in the searched range."""
    if group.get("min_diverged_lr") is not None:
        return fmt(group["min_diverged_lr"])
    statuses = (group.get("curve") or {}).get("status") or []
    top = searched_top(group)
    if top is None or "diverged" in statuses:
        return "—"
    return f"no divergence up to {fmt(top)}"


def stability_note(group: dict) -> str | None:
    """Why max stable sits below an LR that did not diverge: a spike on the way up."""
    spiked = group.get("first_unstable_lr")
    if spiked is None:
        return None
    stable = group.get("max_stable_lr")
    below = f"stable up to {fmt(stable)}; " if stable is not None else ""
    return (
        f"{below}{fmt(spiked)} spiked (unstable), so it and the LRs above it are not called stable"
    )


# --------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Note:
    level: str  # "note" | "warning"
    group: str  # "adam · constant"
    text: str


@dataclass(frozen=True)
class VerdictTable:
    """The verdict table once, as plain text cells: the console (rich) and Markdown (verdict.md,
    the MLflow parent run, Jupyter) render this and nothing else."""

    title: str
    columns: list[tuple[str, bool]]  # (header, right-aligned)
    rows: list[list[str]]
    edge_rows: list[bool]  # the row's best LR sits at an edge of the searched range
    winner: str | None
    notes: list[Note]
    # transfer (report.json["transfer"]): one row per group and axis, each with its note
    transfer: list[tuple[list[str], str]] = field(default_factory=list)
    legend: str = STATUS_LEGEND


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


def verdict_table(report: dict) -> VerdictTable:
    metric = report.get("metric") or "metric"
    rounds = refined(report)
    columns = [(c, False) for c in ("#", "optimizer", "schedule", "best LR", "zone",
                                    "max stable", "min diverged")]  # fmt: skip
    if rounds:
        columns += [(c, False) for c in ("edge", "best LR within", "rounds")]
    columns += [("best val loss", True), (f"val {metric}", True), (COUNTS_HEADER, True)]
    rows, edges = [], []
    for g in report["groups"]:
        zone = g.get("zone")
        rows.append([
            fmt(g["rank"], "d"),
            g["optimizer"] + (" (LR-free)" if g.get("lr_free") else ""),
            schedule_text(g),
            fmt(g["best_lr"]) + (f" (edge: {g['edge']})" if g.get("edge") else ""),
            f"{fmt(zone['low'])} – {fmt(zone['high'])}" if zone else "—",
            fmt(g["max_stable_lr"]),
            min_diverged_text(g),
            *([edge_text(g), bracket_text(g), str(g.get("rounds", 1))] if rounds else []),
            fmt(g["best_val_loss"], ".4f"),
            fmt(g["best_val_metric"], ".4f"),
            status_counts_text(g),
        ])  # fmt: skip
        edges.append(bool(g.get("edge")))
    return VerdictTable(
        title=f"Goldilocks verdict — {report['name']}",
        columns=columns,
        rows=rows,
        edge_rows=edges,
        winner=winner_text(report),
        notes=group_notes(report),
        transfer=transfer_rows(report),
    )


def winner_text(report: dict) -> str | None:
    w = report.get("winner")
    if not w:
        return None
    seeds = w.get("seeds_at_lr", 1)
    basis = f"; best of {seeds} seeds; the table shows their mean" if seeds > 1 else ""
    return (
        f"{w['optimizer']} · {schedule_text(w)} at LR {w['learning_rate']:.3g} "
        f"(seed {w['seed']}{basis}): val loss {fmt(w['best_val_loss'], '.4f')}, "
        f"{report.get('metric') or 'metric'} {fmt(w['val_metric'], '.4f')}"
    )


def group_notes(report: dict) -> list[Note]:
    """What the table cannot say in a cell: spikes below the edge, finite LRs above it, a best
    LR at the edge of the searched range."""
    notes = []
    for g in report["groups"]:
        name = f"{g['optimizer']} · {schedule_text(g)}"
        note = stability_note(g)
        if note:
            notes.append(Note("note", name, note + "."))
        erratic = g.get("erratic_above_edge") or []
        if erratic:
            notes.append(Note("note", name,
                f"{', '.join(fmt(lr) for lr in erratic)} ended finite above the stability edge "
                f"({fmt(g['min_diverged_lr'])}); not trustworthy, so not counted as stable."))  # fmt: skip
        if g.get("edge"):
            notes.append(Note("warning", name,
                f"the best LR is at the {g['edge']} edge of the searched range; widen its range "
                f"(for this optimizer alone: search.optimizer: [{{name: {g['optimizer']}, "
                "learning_rate: {min: ..., max: ...}}])."))  # fmt: skip
    return notes


def verdict_markdown(report: dict[str, Any]) -> str:
    """The verdict table as Markdown: `verdict.md`, the MLflow parent run, Jupyter."""
    table = verdict_table(report)
    lines = [
        f"# {table.title}",
        "",
        "| " + " | ".join(name for name, _ in table.columns) + " |",
        "|" + "|".join("---:" if right else "---" for _, right in table.columns) + "|",
        *("| " + " | ".join(row) + " |" for row in table.rows),
    ]
    if table.winner:
        lines += ["", f"**winner:** {table.winner}"]
    if table.notes:
        lines.append("")
        lines += [f"- {n.level}: {n.group}: {n.text}" for n in table.notes]
    lines += ["", table.legend.capitalize() + "."]
    if table.transfer:
        lines += ["", f"## {TRANSFER_TITLE}", "",
                  "| " + " | ".join(TRANSFER_HEADER) + " |",
                  "|" + "---|" * len(TRANSFER_HEADER)]  # fmt: skip
        lines += ["| " + " | ".join(cells) + " |" for cells, _ in table.transfer]
        lines += [""] + [f"- {note}" for _, note in table.transfer]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- transfer
TRANSFER_TITLE = "Transfer — the best LR at the target"
TRANSFER_HEADER = (
    # the transfer's best LRs are parabola vertices through the grid's best and its neighbours
    # (docs/transfer.md), so they may sit between the grid LRs the verdict table names
    "optimizer", "schedule", "axis", "best LR at each value (vertex)", "exponent (95 %)",
    "predicted at target", "direct (vertex)", "log2 error", "reliable",
)  # fmt: skip


# which method gave the prediction, where it is not the power law of the exponent column
PREDICTED_BY = {"loss_curves": " (from the loss curves)", "slowing": " (the slowing trend)"}


def transfer_rows(report: dict) -> list[tuple[list[str], str]]:
    """The transfer table (report.json["transfer"], docs/transfer.md): one row per group and
    axis with its note in words, the same cells for the console and verdict.md."""
    rows = []
    for name, axis in (report.get("transfer") or {}).items():
        for g in axis["groups"]:
            pred, fit, check = g["prediction"], g.get("fit"), g.get("verification") or {}
            points = ", ".join(f"{p['value']}: {fmt(p.get('best_lr'))}" for p in g["points"])
            exponent = "—"
            if fit:
                lo, hi = fit["exponent_interval"]
                exponent = f"{fit['exponent']:+.2f} ({lo:+.2f} to {hi:+.2f})"
            predicted = fmt(pred.get("best_lr"))
            if pred.get("interval"):
                predicted += f" ({fmt(pred['interval'][0])}–{fmt(pred['interval'][1])})"
            by = PREDICTED_BY.get(pred.get("method") or "power_law", "")
            err = check.get("prediction_error")
            rows.append((
                [g["optimizer"], g["schedule"], name, points, exponent,
                 f"{predicted} at {axis['target']}{by}", fmt(check.get("best_lr"))
                 + (" (range edge)" if check.get("at_range_edge") else ""),
                 "—" if err is None else f"{err:+.2f}", "yes" if pred["reliable"] else "no"],
                f"{g['optimizer']} · {g['schedule']}: {pred['note']}",
            ))  # fmt: skip
    return rows
