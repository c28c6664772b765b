"""Pruning inside a population (search.prune) vs the same sweep unpruned, on the examples.

For each example spec (a copy with `search.prune: {at: [0.25, 0.5]}` added), trained inline
with no tracking, each variant twice in turn (unpruned, pruned, unpruned, pruned; compiled
programs forgotten before each run, so both pay their compiles): whether any group's best LR,
zone, max stable LR, min diverged LR or edge flag changed, the lane-steps trained, and the
wall and training seconds (the faster of the two runs).

    python benchmarks/prune.py [--json] [--examples digits breast_cancer] [--at 0.25 0.5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.refine import train_cold  # noqa: E402
from sweeps.spec.text import load_yaml  # noqa: E402
from sweeps.verdict.analysis import analyze  # noqa: E402
from sweeps.verdict.report import lane_steps  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VERDICT = ("best_lr", "zone", "max_stable_lr", "min_diverged_lr", "edge")


def train(raw: dict) -> dict:
    """Train a spec inline from cold: its verdict per group, lane-steps and seconds."""
    spec, _, _, results, timing, wall = train_cold(raw)
    verdicts, _ = analyze(
        results, loss=spec.loss_name, diverge_factor=spec.early_stopping.diverge_factor
    )
    return {
        "lanes": len(results),
        "lane_steps": lane_steps(results),
        "pruned_lanes": sum(r.status == "pruned" for r in results),
        "stopped_lanes": sum(r.pruned_at_step is not None for r in results),
        "wall_s": round(wall, 2),
        "train_s": round(timing.train_s, 2),
        "groups": {
            f"{v.optimizer}-{v.schedule}-{json.dumps(v.optimizer_args | v.schedule_args)}": {
                k: getattr(v, k) for k in VERDICT
            }
            for v in verdicts
        },
    }


def compare(name: str, at: list[float]) -> dict:
    raw = load_yaml((EXAMPLES / f"{name}.yaml").read_text())
    pruned_raw = json.loads(json.dumps(raw))
    pruned_raw["search"]["prune"] = {"at": at}
    runs: dict[str, list[dict]] = {"unpruned": [], "pruned": []}
    for _ in range(2):
        runs["unpruned"].append(train(raw))
        runs["pruned"].append(train(pruned_raw))
    best = {k: min(v, key=lambda r: r["wall_s"]) for k, v in runs.items()}
    dense, pruned = best["unpruned"], best["pruned"]
    changed = {
        g: {k: [dense["groups"][g][k], pruned["groups"][g].get(k)] for k in VERDICT
            if dense["groups"][g][k] != pruned["groups"].get(g, {}).get(k)}
        for g in dense["groups"]
    }  # fmt: skip
    return {
        "example": name,
        "same_verdict": not any(changed.values()),
        "changed": {g: c for g, c in changed.items() if c},
        "lanes": dense["lanes"],
        "stopped_lanes": pruned["stopped_lanes"],
        "pruned_lanes": pruned["pruned_lanes"],
        "lane_steps": [dense["lane_steps"], pruned["lane_steps"]],
        "lane_steps_saved": round(1 - pruned["lane_steps"] / dense["lane_steps"], 3),
        "wall_s": {k: [r["wall_s"] for r in v] for k, v in runs.items()},
        "train_s": {k: [r["train_s"] for r in v] for k, v in runs.items()},
        "wall_fraction": round(pruned["wall_s"] / dense["wall_s"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true", help="one JSON line")
    ap.add_argument("--examples", nargs="+", default=["digits"])
    ap.add_argument("--at", nargs="+", type=float, default=[0.25, 0.5])
    args = ap.parse_args()
    rows = [compare(name, args.at) for name in args.examples]
    if args.json:
        print(json.dumps({"benchmark": "prune", "at": args.at, "cases": rows}))
        return
    for r in rows:
        print(f"{r['example']}: same verdict {r['same_verdict']} {r['changed'] or ''}| "
              f"{r['stopped_lanes']}/{r['lanes']} lanes stopped ({r['pruned_lanes']} pruned) | "
              f"lane-steps {r['lane_steps'][0]} -> {r['lane_steps'][1]} "
              f"(-{100 * r['lane_steps_saved']:.0f} %) | wall {r['wall_s']} train "
              f"{r['train_s']} | wall x{r['wall_fraction']}")  # fmt: skip


if __name__ == "__main__":
    main()
