"""`goldilocks lr-find` as a library function: the range test (sweeps/core/lrfind.py) for
every optimizer of a spec, over its seeds."""

from __future__ import annotations

import numpy as np

from sweeps.core.args import fixed_args
from sweeps.core.data import Dataset
from sweeps.core.lrfind import RangeTestConfig, range_test, summary
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.core.program import Structure
from sweeps.core.schedules import RANGE_TEST
from sweeps.spec import SweepSpec


def config_for(spec: SweepSpec, **overrides) -> RangeTestConfig:
    """Defaults 1e-8 -> 1, or the spec's learning-rate range when the spec gives one."""
    base = {}
    if "learning_rate" in spec.search.model_fields_set:
        base = {"min_lr": spec.search.learning_rate.min, "max_lr": spec.search.learning_rate.max}
    given = {k: v for k, v in overrides.items() if v is not None}
    return RangeTestConfig(**{**base, **given})


def lr_find(spec: SweepSpec, data: Dataset, config: RangeTestConfig) -> dict:
    """Run the range test for every (non LR-free) optimizer of the spec, over all seeds."""
    seeds = np.asarray(spec.train.seeds)
    curves = []
    for name in spec.search.optimizer_names:
        opt = OPTIMIZERS[name]
        if opt.lr_free:
            continue  # nothing to find: it sets its own step size
        structure = Structure(
            model=spec.model,
            loss=spec.loss_key,
            metrics=spec.metrics.import_ if spec.metrics else None,
            optimizer=name,
            schedule=RANGE_TEST.name,
            batch_size=data.n_train if spec.train.batch_size == "full" else spec.train.batch_size,
            steps=config.steps,
            eval_every=config.steps,
            diverge_factor=1e30,  # only non-finite losses freeze a lane; the curve stops itself
            patience=config.steps + 1,
        )
        args = fixed_args(spec.search.args_for(name), opt.defaults)
        curves += range_test(structure, data, config, args, seeds, spec.train.data_seed)
    return {"config": config.__dict__, "curves": curves, "suggestions": summary(curves)}
