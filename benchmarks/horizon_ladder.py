"""The horizon prediction on many splits of one run: which swept horizons, which target.

One sweep trains every horizon of a ladder (default 50, 100, ..., 3,200 and 6,400 steps) in one
program, MLP 64-64, cosine decay (`--schedule`: another), batch 32, an LR grid of two per octave, seeds 0-2. Then each
split (swept horizons -> a target 8x the longest) is judged by the product's own transfer code
(sweeps/transfer/analysis.py `transfer_group`, on the lanes of those horizons only), so every
prediction, its method, `reliable`, note and interval are what a user of `transfer.steps` with
those values would get, and the ladder's own lanes at the target are the direct check.

Reported per split: the best LRs at the swept horizons, the method that predicted and its
prediction, the power law's, the direct best LR, both log2 errors, the loss curves' held-out
miss, `reliable` and whether it was honest (reliable only where within 1.41x).

    python benchmarks/horizon_ladder.py [--json] [--cases teacher:adam,...] [--seeds 0 1 2]
        [--save DIR | --load DIR] [--schedule cosine]

`--save DIR` keeps each case's lanes (learning rate, seed, horizon, status, validation
history) as DIR/<dataset>-<optimizer>.json; `--load DIR` judges them again without training
(the splits or the transfer code changed, the training did not).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import transfer_lr_grid  # noqa: E402
from sweeps.core.schedules import HORIZON  # noqa: E402
from sweeps.exec.inline import train_inline  # noqa: E402
from sweeps.pipeline import load_sweep_data  # noqa: E402
from sweeps.spec import parse_spec  # noqa: E402
from sweeps.transfer.analysis import epochs_text, transfer_group  # noqa: E402

LADDER = [50, 100, 200, 400, 800, 1600, 3200, 6400]
SPLITS = [  # swept horizons, target (8x the longest)
    ([50, 100, 200, 400], 3200),
    ([100, 200, 400, 800], 6400),
    ([50, 100, 200, 400, 800], 6400),
    ([100, 200, 400], 3200),
    ([200, 400, 800], 6400),
]
ROWS = {"teacher": 60_000, "teacher_big": 250_000}


def ladder_spec(dataset: str, optimizer: str, seeds: list[int], quick: bool, schedule: str):
    ladder = [10, 20, 40, 80, 160] if quick else LADDER
    data = {"name": "digits"} if dataset == "digits" else {
        "name": "teacher", "n_samples": 1000 if quick else ROWS[dataset]}  # fmt: skip
    return parse_spec({
        "name": f"ladder-{dataset}-{optimizer}",
        "data": data,
        "model": {"name": "mlp", "hidden": [64, 64]},
        "loss": "cross_entropy",
        "train": {"batch_size": 32, "eval_every": 10 if quick else 50, "seeds": seeds},
        "search": {
            "learning_rate": transfer_lr_grid(optimizer),
            "optimizer": [optimizer],
            "schedule": [schedule],
        },
        "transfer": {"steps": {"values": ladder[:-1], "target": ladder[-1]}, "verify": True},
    })  # fmt: skip


def splits_of(quick: bool) -> list:
    if quick:
        return [([10, 20, 40], 80), ([10, 20, 40, 80], 160)]
    return SPLITS


def _saved(results, n_train: int, seconds: float) -> dict:
    lanes = [{"lr": r.lane.learning_rate, "seed": r.lane.seed, "optimizer": r.lane.optimizer,
              "horizon": int(r.lane.schedule_args[HORIZON]), "status": r.status,
              "step": list(r.step), "val_loss": [float(v) for v in r.val_loss]}
             for r in results]  # fmt: skip
    return {"n_train": n_train, "seconds": seconds, "lanes": lanes}


def _loaded(saved: dict, optimizer: str, schedule: str = "cosine") -> list:
    """Saved lanes as the results transfer_group reads (lane fields, status, history)."""
    return [
        SimpleNamespace(
            lane=SimpleNamespace(
                learning_rate=d["lr"],
                seed=d["seed"],
                optimizer=d.get("optimizer", optimizer),
                schedule=schedule,
                optimizer_args={},
                schedule_args={HORIZON: d["horizon"]},
            ),
            status=d["status"],
            step=d["step"],
            val_loss=d["val_loss"],
        )  # fmt: skip
        for d in saved["lanes"]
    ]


def case(
    dataset: str,
    optimizer: str,
    seeds: list[int],
    quick: bool,
    lanes_dir: Path | None = None,
    load: bool = False,
    schedule: str = "cosine",
) -> dict:
    """One dataset and optimizer: train the ladder (or, with `load`, read the lanes a run with
    `--save` kept in `lanes_dir`) and judge every split."""
    name = f"{dataset}-{optimizer}" + ("" if schedule == "cosine" else f"-{schedule}")
    saved_at = lanes_dir / f"{name}.json" if lanes_dir else None
    if load:
        saved = json.loads(saved_at.read_text())
        n_train, train_s, results = (
            saved["n_train"],
            saved["seconds"],
            _loaded(saved, optimizer, schedule),
        )
    else:
        spec = ladder_spec(dataset, optimizer, seeds, quick, schedule)
        t0 = time.perf_counter()
        data = load_sweep_data(spec)
        results = train_inline(spec, data)
        n_train, train_s = data.n_train, time.perf_counter() - t0
        if saved_at:
            saved_at.parent.mkdir(parents=True, exist_ok=True)
            saved_at.write_text(json.dumps(_saved(results, n_train, train_s)))
    members = list(results)
    rows = []
    for values, target in splits_of(quick):
        regime = epochs_text("steps", values, target, target, 32, n_train)
        g = transfer_group(members, {}, values, target, True, "steps", target, regime)
        pred, check = g["prediction"], g["verification"]
        err = check.get("prediction_error")
        rows.append({
            "values": values, "target": target,
            "best_lr": [p.get("best_lr") for p in g["points"]],
            "method": pred.get("method"), "predicted": pred.get("best_lr"),
            "interval": pred.get("interval"), "power_law": pred.get("power_law_lr"),
            "direct": check.get("best_lr"), "prediction_error": err,
            "power_law_error": check.get("power_law_error"),
            "constant_error": check.get("constant_error"),
            "held_out_error": (pred.get("loss_curves") or {}).get("held_out_error"),
            "power_law_held_out_error": pred.get("held_out_error"),
            "reliable": pred["reliable"], "note": pred["note"],
            "honest": (not pred["reliable"]) or (err is not None and abs(err) <= 0.5),
        })  # fmt: skip
    return {"dataset": dataset, "optimizer": optimizer, "schedule": schedule, "loaded": load,
            "seeds": sorted({r.lane.seed for r in results}),
            "train_rows": n_train, "lanes": len(results),
            "horizons": sorted({int(r.lane.schedule_args[HORIZON]) for r in results}),
            "train_s": round(train_s, 1), "splits": rows}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--cases", default="teacher:adam,teacher:sgd,digits:adam,digits:sgd")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--save", type=Path, help="keep every case's lanes in this folder")
    parser.add_argument("--load", type=Path, help="judge the lanes a --save run kept here")
    parser.add_argument("--schedule", default="cosine", help="the decay schedule (any built-in)")
    args = parser.parse_args()
    cases = [c.split(":") for c in args.cases.split(",")]
    where = args.load or args.save
    out = [case(d, o, args.seeds, args.quick, where, bool(args.load), args.schedule)
           for d, o in cases]  # fmt: skip
    splits = [s for c in out for s in c["splits"]]
    within = [
        abs(s["prediction_error"]) <= 0.5 for s in splits if s["prediction_error"] is not None
    ]
    summary = {
        "benchmark": "horizon_ladder", "quick": args.quick, "cases": out,
        "honest": all(s["honest"] for s in splits),
        "within": f"{sum(within)}/{len(within)}",
        "power_law_within": f"{sum(abs(s['power_law_error']) <= 0.5 for s in splits if s['power_law_error'] is not None)}/{len(splits)}",
    }  # fmt: skip
    if args.json:
        print(json.dumps(summary))
        return
    for c in out:
        for s in c["splits"]:

            def e(v):
                return "—" if v is None else f"{v:+.2f}"

            print(f"{c['dataset']:11s} {c['optimizer']:4s} {s['values']}->{s['target']}: "
                  f"{s['method']} {s['predicted']:.3g}, direct {s['direct']:.3g}, "
                  f"log2 error {e(s['prediction_error'])} (power law {e(s['power_law_error'])}), "
                  f"reliable {s['reliable']}")  # fmt: skip
    print("honest:", summary["honest"], "within:", summary["within"],
          "power law within:", summary["power_law_within"])  # fmt: skip


if __name__ == "__main__":
    main()
