"""The batch axis' gradient noise scale at the best LR: which lane to train, and how.

One lane is trained at the best LR of the first group (in the spec's order) that has one at
the largest swept batch, with that group's optimizer, schedule and batch and the first seed,
and B_simple is measured along it at 0, T/4, T/2 and T between the smallest and largest batch
trained (sweeps/core/noise_scale.py). One group, not each: B_simple is a property of where
training takes the loss, and one lane keeps its cost a few per cent of the sweep.
"""

from __future__ import annotations

import time
from typing import Any

from sweeps.core.data import Dataset
from sweeps.core.noise_scale import noise_scale_in_training
from sweeps.spec import SweepSpec


def noise_scale_at_best_lr(spec: SweepSpec, verdicts: list, data: Dataset) -> dict[str, Any] | None:
    """report.json["transfer"]["batch_size"]["noise_scale"]; None when no group has a best LR
    at the largest swept batch."""
    from sweeps.exec.trial import structure_for
    from sweeps.plan.lanes import Lane, Population

    trained, swept = spec.transfer.trained(), max(spec.transfer.batch_size.values)
    best = next((v for v in verdicts if v.batch_size == swept and not v.lr_free
                 and v.best_lr is not None), None)  # fmt: skip
    if best is None:
        return None
    seed = spec.train.seeds[0]
    lane = Lane(0, best.optimizer, best.schedule, best.best_lr, seed, dict(best.optimizer_args),
                dict(best.schedule_args), batch_size=swept)  # fmt: skip
    pop = Population("noise", lane.optimizer, lane.schedule, (lane,), batch_size=swept)
    t0 = time.perf_counter()
    got = noise_scale_in_training(
        structure_for(spec, pop, data), data, learning_rate=best.best_lr,
        optimizer_args=best.optimizer_args, schedule_args=best.schedule_args, seed=seed,
        small=trained[0], big=trained[-1],
    )  # fmt: skip
    return {**got, "optimizer": best.optimizer, "schedule": best.schedule, "batch_size": swept,
            "seconds": time.perf_counter() - t0}  # fmt: skip
