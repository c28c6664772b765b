"""Refinement rounds vs a dense grid: the same precision for how many lane-steps and seconds.

Two cases, each trained inline (no tracking) twice:
- least squares (full-batch GD and heavy ball, known lambda_max): a coarse grid of 7 LRs over
  6 decades refined to `ratio` 1.1, against a dense log grid over the same range whose
  neighbours are as close as the edge ratio the refined run reached;
- digits (MLP, Adam and SGD): a coarse grid of 7 LRs over 1e-4..10 refined to 1.1, against a
  dense grid of 49 LRs over the same range (ratio 1.27), comparing the best validation loss.

Prints a table, or one JSON line with `--json`:
    python benchmarks/refine.py [--json] [--quick] [--seeds N (default 5)]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.core.program import forget_programs  # noqa: E402
from sweeps.exec.inline import InlineExecutor  # noqa: E402
from sweeps.pipeline import load_sweep_data  # noqa: E402
from sweeps.plan.planner import Planner  # noqa: E402
from sweeps.plan.refine import dense_count  # noqa: E402
from sweeps.spec import parse_spec  # noqa: E402
from sweeps.stream import Dispatcher  # noqa: E402
from sweeps.verdict.analysis import analyze, analyze_for  # noqa: E402
from sweeps.verdict.report import lane_steps  # noqa: E402

BETA = 0.9


def least_squares(lr: dict, refine: dict | None) -> dict:
    search = {"learning_rate": lr, "optimizer": ["sgd", "momentum"],
              "optimizer_args": {"momentum": BETA}}  # fmt: skip
    if refine:
        search["refine"] = refine
    return {
        "name": "least-squares",
        "data": {"name": "linear", "val_fraction": 0.0},
        "model": {"name": "linear"},
        "loss": "mse",
        "train": {"steps": 150, "batch_size": "full", "eval_every": 10, "seeds": [0]},
        "search": search,
    }


def digits(lr: dict, refine: dict | None, steps: int, seeds: int = 1) -> dict:
    search = {"learning_rate": lr, "optimizer": ["adam", "sgd"]}
    if refine:
        search["refine"] = refine
    return {
        "name": "digits",
        "data": {"name": "digits", "val_fraction": 0.2, "standardize": True},
        "model": {"name": "mlp", "hidden": [64], "activation": "relu"},
        "loss": "cross_entropy",
        "train": {
            "steps": steps,
            "batch_size": 128,
            "eval_every": 25,
            "seeds": list(range(seeds)),
        },  # fmt: skip
        "search": search,
        "resources": {"max_lanes_per_trial": 64},
    }


def train_cold(raw: dict):
    """Train a spec inline from cold (no compiled program kept), untracked: (spec, data,
    planner, lane results, Timing, wall seconds). Also used by benchmarks/prune.py."""
    spec = parse_spec(raw)
    data = load_sweep_data(spec)
    planner = Planner(spec)
    dispatcher = Dispatcher(spec.metric_name, spec.train.steps, 0, planner.expected_lanes)
    planner.subscribe(dispatcher.add_population)
    planner.follow(dispatcher, analyze_for)
    forget_programs()
    t0 = time.perf_counter()
    timing = InlineExecutor(spec, data).run(planner, dispatcher)
    wall = time.perf_counter() - t0
    return spec, data, planner, dispatcher.results(), timing, wall


def train(raw: dict) -> dict:
    """Train a spec inline from cold: its verdicts and costs."""
    spec, data, planner, results, timing, wall = train_cold(raw)
    verdicts, _ = analyze(results, loss=spec.loss_name)
    return {
        "lanes": len(results),
        "lane_steps": lane_steps(results),
        "wall_s": round(wall, 2),
        "compiles": timing.compiles,
        "rounds": planner.round,
        "groups": {
            v.optimizer: {
                "best_lr": v.best_lr,
                "best_val_loss": v.best_val_loss,
                "edge": [v.max_stable_lr, v.min_diverged_lr],
                "edge_ratio": v.edge_ratio,
                "best_lr_bracket": v.best_lr_bracket,
            }
            for v in verdicts
        },
        "data": data,
    }


def lambda_max(data) -> float:
    a = np.hstack([np.asarray(data.x_train, float), np.ones((data.n_train, 1))])
    return float(np.linalg.eigvalsh(2.0 / data.n_train * a.T @ a).max())


def compare(name: str, refined: dict, dense: dict, extra: dict) -> dict:
    refined.pop("data"), dense.pop("data")
    return {
        "case": name,
        "refined": refined,
        "dense": dense,
        "lane_steps_fraction": round(refined["lane_steps"] / dense["lane_steps"], 3),
        "wall_fraction": round(refined["wall_s"] / dense["wall_s"], 3),
        **extra,
    }


def run(quick: bool, seeds: int = 5) -> list[dict]:
    out = []
    coarse = {"min": 1e-4, "max": 100.0, "num": 7, "scale": "log"}
    refine = {"ratio": 1.1, "max_rounds": 4}
    ls = train(least_squares(coarse, refine))
    lam = lambda_max(ls["data"])
    reached = max(g["edge_ratio"] for g in ls["groups"].values())
    num = dense_count(coarse["min"], coarse["max"], reached)
    dense = train(least_squares({**coarse, "num": num}, None))
    thresholds = {"sgd": 2 / lam, "momentum": 2 * (1 + BETA) / lam}
    brackets = {
        k: ls["groups"][k]["edge"][0] <= t < ls["groups"][k]["edge"][1]
        for k, t in thresholds.items()
    }
    out.append(compare("least_squares", ls, dense, {"thresholds": thresholds,
                                                    "edge_brackets_threshold": brackets}))  # fmt: skip
    steps = 100 if quick else 300
    coarse = {"min": 1e-4, "max": 10.0, "num": 7, "scale": "log"}
    refined = train(digits(coarse, refine, steps, seeds))
    dense = train(digits({**coarse, "num": 49}, None, steps, seeds))
    gap = {
        k: round(refined["groups"][k]["best_val_loss"] / dense["groups"][k]["best_val_loss"] - 1, 4)
        for k in refined["groups"]
    }
    out.append(compare("digits", refined, dense, {"best_val_loss_vs_dense": gap, "seeds": seeds}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true", help="one JSON line")
    ap.add_argument("--quick", action="store_true", help="digits at 100 steps, not 300")
    ap.add_argument("--seeds", type=int, default=5, help="digits: seeds per LR (the verdict's "
                    "best loss is their mean; with fewer than 5, SGD just below its edge "
                    "compares lucky draws: docs/precision.md)")  # fmt: skip
    args = ap.parse_args()
    rows = run(args.quick, args.seeds)
    if args.json:
        print(json.dumps({"benchmark": "refine", "cases": rows}))
        return
    for r in rows:
        print(f"{r['case']}: refined {r['refined']['lanes']} lanes, {r['refined']['lane_steps']} "
              f"lane-steps, {r['refined']['wall_s']}s, {r['refined']['rounds']} rounds | dense "
              f"{r['dense']['lanes']} lanes, {r['dense']['lane_steps']} lane-steps, "
              f"{r['dense']['wall_s']}s | lane-steps x{r['lane_steps_fraction']}, "
              f"wall x{r['wall_fraction']}")  # fmt: skip
        for k, g in r["refined"]["groups"].items():
            d = r["dense"]["groups"][k]
            print(f"  {k}: edge {g['edge']} (x{g['edge_ratio']}) vs dense {d['edge']}; best "
                  f"{g['best_lr']} loss {g['best_val_loss']:.4f} vs dense {d['best_lr']} "
                  f"{d['best_val_loss']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
