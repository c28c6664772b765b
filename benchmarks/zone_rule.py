"""How wide is the Goldilocks zone under each zone_tolerance, measured on the examples.

Trains each example once (inline, no tracking), then re-reads the same lanes' verdict under
several `analysis.zone_tolerance` values and prints, per group, the zone and the largest gap
in the headline metric between the best LR and any LR inside the zone. The default is chosen
from these figures (docs/verdict.md, docs/benchmarks.md).

    python benchmarks/zone_rule.py [examples/digits.yaml ...] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.exec.inline import train_inline  # noqa: E402
from sweeps.pipeline import prepare  # noqa: E402
from sweeps.spec import load_spec  # noqa: E402
from sweeps.verdict.analysis import analyze  # noqa: E402

TOLERANCES = (0.02, 0.05, 0.1, 0.2)
DEFAULT_EXAMPLES = ("examples/digits.yaml", "examples/breast_cancer.yaml", "examples/diabetes.yaml")


def measure(path: Path) -> list[dict]:
    spec = load_spec(path)
    prepared = prepare(spec, base_dir=path.parent)
    results = train_inline(spec, prepared.data)
    rows = []
    for tol in TOLERANCES:
        lanes = copy.deepcopy(results)
        verdicts, _ = analyze(lanes, loss=spec.loss, zone_tolerance=tol)
        metric_at = defaultdict(list)
        for r in lanes:
            metric_at[(r.lane.group_key, r.lane.learning_rate)].append(r.best_val_metric)
        for v in verdicts:
            if v.zone is None:
                rows.append({"example": path.stem, "tolerance": tol, "group": v.optimizer})
                continue
            key = next(r.lane.group_key for r in lanes if r.lane.optimizer == v.optimizer)
            inside = [
                lr for lr in v.curve["learning_rate"] if v.zone["low"] <= lr <= v.zone["high"]
            ]
            best = max(metric_at[(key, v.best_lr)])
            gap = max(best - min(metric_at[(key, lr)]) for lr in inside)
            rows.append(
                {
                    "example": path.stem,
                    "tolerance": tol,
                    "group": f"{v.optimizer}·{v.schedule}",
                    "zone": [v.zone["low"], v.zone["high"]],
                    "lrs_in_zone": len(inside),
                    "max_metric_gap": round(gap, 4),
                    "max_stable_lr": v.max_stable_lr,
                    "min_diverged_lr": v.min_diverged_lr,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("examples", nargs="*", default=list(DEFAULT_EXAMPLES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [row for example in args.examples for row in measure(Path(example))]
    if args.json:
        print(json.dumps(rows))
        return
    for row in rows:
        zone = row.get("zone")
        text = f"{zone[0]:.3g} – {zone[1]:.3g}" if zone else "no zone"
        gap = f"max gap {row['max_metric_gap']:.4f} over {row['lrs_in_zone']} LRs" if zone else ""
        print(f"{row['example']:14} tol {row['tolerance']:<5} {row['group']:22} {text:20} {gap}")


if __name__ == "__main__":
    main()
