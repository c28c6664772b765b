"""The verdict in words: what the console table, the Markdown table and notes say about a group.

Reads report.json's group dicts only (no JAX, no pandas): the service's client prints verdicts
with it too. Reports written before a status existed lack its count; it reads as 0.
"""

from __future__ import annotations

from typing import Any

# One letter per status, in the order the table's lane counts list them: the low side (too
# slow, stagnated), then the high side (too high, unstable, diverged).
STATUS_LETTERS = {
    "converged": "c",
    "too_slow": "l",
    "stagnated": "s",
    "too_high": "h",
    "unstable": "u",
    "diverged": "d",
}
COUNTS_HEADER = "lanes " + "/".join(STATUS_LETTERS.values())
STATUS_LEGEND = (
    "lanes: c converged, l too slow (improved, stopped short of the best), s stagnated (barely "
    "moved), h too high (trained without a spike, ended far from the best), u unstable "
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


# --------------------------------------------------------------------------- transfer
TRANSFER_HEADER = (
    "optimizer", "schedule", "axis", "best LR at each value", "exponent (95 %)",
    "predicted at target", "direct", "log2 error", "reliable",
)  # fmt: skip


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
            err = check.get("prediction_error")
            rows.append((
                [g["optimizer"], g["schedule"], name, points, exponent,
                 f"{predicted} at {axis['target']}", fmt(check.get("best_lr"))
                 + (" (range edge)" if check.get("at_range_edge") else ""),
                 "—" if err is None else f"{err:+.2f}", "yes" if pred["reliable"] else "no"],
                f"{g['optimizer']} · {g['schedule']}: {pred['note']}",
            ))  # fmt: skip
    return rows
