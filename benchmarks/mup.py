"""μP vs standard parametrization: the best Adam LR across widths (docs/mup.md).

One sweep per parametrization, each a `transfer.width` axis over the model's width (the mlp's
`width` on the teacher task, or the transformer's `d_model` on the pydoc_topics characters; one
population per width), Adam, cosine decay, refined (`search.refine`) so each width's best LR is
bracketed. The check of issue 19: under μP the best LR moves across the widths by at most one
refinement bracket (the widest bracket's ratio); under SP the drift is shown. With `--verify` the
target width (4x the widest swept) is trained too and prediction_error = log2(predicted / direct)
is reported for both. `--teacher-hidden N` gives the mlp a teacher of N hidden units instead of
the built-in's 64 (the same loader, sweeps/core/synthetic.py, as a data import): μP's residual
drift on the mlp depends on the task, and on the built-in teacher the narrowest width's best LR
sits 1.3–1.6x above the rest (docs/mup.md).

    python benchmarks/mup.py [--model mlp|transformer] [--json] [--quick] [--verify]
        [--base-width N] [--widths N N ...] [--seeds N] [--teacher-hidden N]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.exec.inline import train_inline  # noqa: E402
from sweeps.pipeline import load_sweep_data  # noqa: E402
from sweeps.spec import parse_spec  # noqa: E402
from sweeps.transfer.analysis import transfer_section  # noqa: E402
from sweeps.transfer.points import best_lr  # noqa: E402
from sweeps.verdict.analysis import analyze_for  # noqa: E402
from sweeps.verdict.report import lane_steps  # noqa: E402

BASE = 32


def per_seed_best(results: list, widths: list[int], seeds: int) -> dict[str, list[float | None]]:
    """Each width's best LR from each seed alone: how far one seed's answer moves (noise)."""
    out: dict[str, list[float | None]] = {}
    for w in widths:
        row = []
        for s in range(seeds):
            lanes = [r for r in results if r.lane.model_width == w and r.lane.seed == s]
            finals = [
                r.val_loss[-1] if r.status != "diverged" and r.val_loss else math.inf for r in lanes
            ]
            found = best_lr([r.lane.learning_rate for r in lanes], [s] * len(lanes), finals)
            row.append(None if found is None else round(found.best_lr, 5))
        out[str(w)] = row
    return out


def setup(model_name: str, quick: bool, base: int, teacher_hidden: int | None = None) -> dict:
    """The model, its width argument, the task and the widths swept for one model."""
    if model_name == "mlp":
        rows = 4000 if quick else 10_000
        data = {"name": "teacher", "n_samples": rows}
        if teacher_hidden is not None:
            args = {"n_samples": rows, "hidden": teacher_hidden}
            data = {"import": "sweeps.core.synthetic:teacher_table", "args": args}
        return {
            "model": {"name": "mlp", "hidden": [base, base]},
            "arg": "width",
            "data": data,
            "steps": 200 if quick else 300,
            "widths": [base, 2 * base, 4 * base] if quick else [base, 2 * base, 4 * base, 8 * base],
        }
    # the char-level task of examples/char_transformer.yaml, 2 layers of 4 heads; d_ff = 4 d_model
    return {
        "model": {"name": "transformer", "n_layers": 2, "n_heads": 4},  # d_model: the axis
        "arg": "d_model",
        "data": {"name": "pydoc_topics", "block_size": 16 if quick else 32, "val_fraction": 0.1},
        "steps": 60 if quick else 300,
        "widths": [base, 2 * base] if quick else [base, 2 * base, 4 * base],
    }


def case(
    parametrization: str,
    quick: bool,
    verify: bool,
    model_name: str = "mlp",
    base: int = BASE,
    widths: list[int] | None = None,
    seeds: int = 1,
    teacher_hidden: int | None = None,
) -> dict:
    cfg = setup(model_name, quick, base, teacher_hidden)
    widths = sorted(widths or cfg["widths"])
    target = 4 * widths[-1]
    model = dict(cfg["model"])
    if parametrization == "mup":
        model.update(parametrization="mup", base_width=base)
    raw = {
        "name": f"mup-{model_name}-{parametrization}",
        "data": cfg["data"],
        "model": model,
        "loss": "cross_entropy",
        "train": {
            "steps": cfg["steps"],
            "batch_size": 32,
            "eval_every": min(50, cfg["steps"] // 2),
            "seeds": list(range(seeds)),
        },
        "search": {
            # 2x apart, refined to within 1.25x around each width's best LR
            "learning_rate": {"min": 1e-4, "max": 0.128, "num": 11},
            "optimizer": ["adam"],
            "schedule": ["cosine"],
            "refine": {"ratio": 1.25, "max_rounds": 3, "extend": 2},
        },
        "transfer": {
            "width": {"arg": cfg["arg"], "values": widths, "target": target},
            "verify": verify,
        },
    }
    spec = parse_spec(raw)
    t0 = time.perf_counter()
    data = load_sweep_data(spec)
    results = train_inline(spec, data)
    verdicts, _ = analyze_for(spec, results)
    section = transfer_section(
        spec.transfer, results, verdicts, spec.train.steps, spec.train.batch_size, data.n_train
    )
    (group,) = section["width"]["groups"]
    points = [p for p in group["points"] if p.get("best_lr")]
    best = [p["best_lr"] for p in points]
    brackets = [p["bracket"][1] / p["bracket"][0] for p in points if p.get("bracket")]
    drift = math.log2(max(best) / min(best))
    bracket = math.log2(max(brackets)) if brackets else None
    fit, pred, check = group["fit"] or {}, group["prediction"], group.get("verification") or {}
    return {
        "model": model_name,
        "base_width": base,
        "seeds": seeds,
        "teacher_hidden": teacher_hidden,
        "parametrization": parametrization,
        "widths": widths,
        "best_lr": {str(p["value"]): p["best_lr"] for p in points},
        "bracket": {str(p["value"]): p.get("bracket") for p in points},
        # log2 of max/min best LR over the widths, and of the widest refined bracket
        "drift_log2": round(drift, 3),
        "bracket_log2": None if bracket is None else round(bracket, 3),
        "within_one_bracket": bracket is not None and drift <= bracket,
        # the same without the narrowest width (finite-width effects are largest there)
        "drift_log2_without_narrowest": round(math.log2(max(best[1:]) / min(best[1:])), 3),
        "exponent": fit.get("exponent"),
        "exponent_interval": fit.get("exponent_interval"),
        "target": target,
        "predicted": pred.get("best_lr"),
        "reliable": pred.get("reliable"),
        "note": pred.get("note"),
        "direct": check.get("best_lr"),
        "prediction_error": check.get("prediction_error"),
        "per_seed_best_lr": per_seed_best(results, widths, seeds) if seeds > 1 else None,
        "lanes": len(results),
        "lane_steps": lane_steps(results),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line")
    parser.add_argument("--model", choices=["mlp", "transformer"], default="mlp")
    parser.add_argument("--quick", action="store_true", help="fewer widths and steps")
    parser.add_argument("--verify", action="store_true", help="train the target width too")
    parser.add_argument("--base-width", type=int, default=BASE, help="μP's base (and SP's hidden)")
    parser.add_argument("--widths", type=int, nargs="+", help="widths swept (default: from base)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per lane")
    parser.add_argument("--teacher-hidden", type=int, help="the mlp's teacher's hidden units")
    args = parser.parse_args()
    if args.teacher_hidden is not None and args.model != "mlp":
        parser.error("--teacher-hidden: the teacher is the mlp's task")
    rows = [
        case(
            p,
            args.quick,
            args.verify,
            args.model,
            args.base_width,
            args.widths,
            args.seeds,
            args.teacher_hidden,
        )
        for p in ("sp", "mup")
    ]
    sp, mu = rows
    summary = {
        "benchmark": "mup",
        "model": args.model,
        "quick": args.quick,
        "cases": rows,
        # the check: μP's best LR stays within one bracket, SP's drifts further
        "mup_flat": mu["within_one_bracket"],
        "sp_drifts": sp["drift_log2"] > mu["drift_log2"],
    }
    if args.json:
        print(json.dumps(summary))
        return
    for r in rows:
        print(
            f"{r['parametrization']:4s} best LR "
            + ", ".join(f"w{k}: {v:.3g}" for k, v in r["best_lr"].items())
            + f" | drift {r['drift_log2']:+.2f} log2 (bracket {r['bracket_log2']}) "
            f"| exponent {r['exponent']} | {r['wall_s']} s"
        )
    print("μP flat:", summary["mup_flat"], "SP drifts:", summary["sp_drifts"])


if __name__ == "__main__":
    main()
