"""Searchers: where the points of a sweep come from, behind one ask/tell interface.

`ask()` returns the next points to train as (key, point) pairs, or [] when the search is done;
`tell(key, score)` reports how a point trained (lower is better). Grid and random know every
point up front: their first `ask` returns them all and `tell` is ignored. TPE (Optuna's
Tree-structured Parzen Estimator, the sampler Ray Tune's `OptunaSearch` wraps) proposes one
point at a time from the scores told so far. Searchers make points; only the planner turns
them into lanes.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Protocol

import numpy as np

from sweeps.core.args import fixed_args, searched_args
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.core.schedules import SCHEDULES
from sweeps.plan.lanes import Point
from sweeps.spec import SweepSpec

BAD_SCORE = 1e30  # a point whose lanes all diverged: a number, never NaN, for ASHA and TPE


class Searcher(Protocol):
    adaptive: bool  # True: points depend on the scores told (tpe)

    def ask(self) -> list[tuple[str, Point]]: ...

    def tell(self, key: str, score: float) -> None: ...


def make_searcher(spec: SweepSpec) -> Searcher:
    method = spec.search.method
    if method == "grid":
        return FixedSearcher(list(grid_points(spec)))
    if method == "random":
        return FixedSearcher(list(random_points(spec)))
    if method == "tpe":
        return TpeSearcher(spec)
    raise ValueError(f"search.method: unknown method '{method}'")


def trial_score(method: str, val_loss: np.ndarray) -> float:
    """How a trial compares to others (Tune's metric for ASHA, and what tpe is told).

    A grid/random population is judged by its best lane; a tpe point by the mean over its
    seeds, and as BAD_SCORE if any seed diverged."""
    finite = val_loss[np.isfinite(val_loss)]
    if method == "tpe":
        return float(np.mean(val_loss)) if finite.size == len(val_loss) else BAD_SCORE
    return float(finite.min()) if finite.size else BAD_SCORE


def learning_rates(spec: SweepSpec, optimizer: str | None = None) -> list[float]:
    """The LR grid: the optimizer's own range when the spec gives one, else the search's."""
    r = spec.search.lr_range(optimizer) if optimizer else spec.search.learning_rate
    if r.num == 1:
        return [r.min]
    grid = (
        np.geomspace(r.min, r.max, r.num) if r.scale == "log" else np.linspace(r.min, r.max, r.num)
    )
    return [float(v) for v in grid]


class FixedSearcher:
    """Every point known before training (grid, random)."""

    adaptive = False

    def __init__(self, points: list[Point]):
        self._points = points
        self._asked = False

    def ask(self) -> list[tuple[str, Point]]:
        if self._asked:
            return []
        self._asked = True
        return [(str(i), p) for i, p in enumerate(self._points)]

    def tell(self, key: str, score: float) -> None:
        pass


def _arg_grid(given: dict, defaults: dict[str, float]) -> list[dict[str, float]]:
    """Every combination of the searched (list-valued) arguments, on top of the fixed ones."""
    base, searched = fixed_args(given, defaults), searched_args(given, defaults)
    return [
        {**base, **dict(zip(searched, combo, strict=True))}
        for combo in itertools.product(*searched.values())
    ]


def grid_points(spec: SweepSpec):
    s = spec.search
    for opt_name in s.optimizer_names:
        opt = OPTIMIZERS[opt_name]
        lrs = learning_rates(spec, opt_name)
        for sched_name in s.schedule:
            for opt_args in _arg_grid(s.args_for(opt_name), opt.defaults):
                for sched_args in _arg_grid(s.schedule_args, SCHEDULES[sched_name].defaults):
                    for lr in [opt.default_lr] if opt.lr_free else lrs:
                        yield Point(opt_name, sched_name, lr, opt_args, sched_args)


def random_points(spec: SweepSpec):
    s = spec.search
    rng = np.random.default_rng(s.seed)
    for _ in range(s.num_samples):
        opt_name = str(rng.choice(s.optimizer_names))
        sched_name = str(rng.choice(s.schedule))
        opt = OPTIMIZERS[opt_name]
        r = s.lr_range(opt_name)
        if opt.lr_free:
            lr = opt.default_lr
        elif r.scale == "log":
            lr = float(np.exp(rng.uniform(np.log(r.min), np.log(r.max))))
        else:
            lr = float(rng.uniform(r.min, r.max))
        opt_args = _pick(rng, s.args_for(opt_name), opt.defaults)
        sched_args = _pick(rng, s.schedule_args, SCHEDULES[sched_name].defaults)
        yield Point(opt_name, sched_name, lr, opt_args, sched_args)


def _pick(rng: np.random.Generator, given: dict, defaults: dict[str, float]) -> dict[str, float]:
    out = fixed_args(given, defaults)
    for k, values in searched_args(given, defaults).items():
        out[k] = float(rng.choice(values))
    return out


class TpeSearcher:
    """Optuna's TPE sampler through its ask/tell API, seeded by `search.seed`."""

    adaptive = True

    def __init__(self, spec: SweepSpec):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        s = spec.search
        self.num_samples = s.num_samples
        r = s.learning_rate
        D = optuna.distributions
        self.space: dict[str, Any] = {
            "learning_rate": D.FloatDistribution(r.min, r.max, log=r.scale == "log"),
            "optimizer": D.CategoricalDistribution(s.optimizer_names),
            "schedule": D.CategoricalDistribution(list(s.schedule)),
        }
        # An optimizer with its own LR range gets its own dimension (optuna's spaces are
        # fixed: every dimension is drawn each time; a point reads its optimizer's).
        for name in s.optimizer_names:
            own = s.lr_range(name)
            if own is not r and not OPTIMIZERS[name].lr_free:
                self.space[f"learning_rate.{name}"] = D.FloatDistribution(
                    own.min, own.max, log=own.scale == "log"
                )
        # Searched arguments: the search's ("opt.momentum"), and an optimizer's own lists
        # ("opt.sgd.momentum"), so a point only ever takes values its optimizer was given.
        for prefix, given in (("opt", s.optimizer_args), ("sched", s.schedule_args)):
            for k, v in given.items():
                if isinstance(v, list):
                    self.space[f"{prefix}.{k}"] = D.CategoricalDistribution([float(x) for x in v])
        for entry in s.optimizer:
            for k, v in (getattr(entry, "optimizer_args", None) or {}).items():
                if isinstance(v, list):
                    self.space[f"opt.{entry.name}.{k}"] = D.CategoricalDistribution(
                        [float(x) for x in v]
                    )
        self._search = s
        self.study = optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=s.seed)
        )
        self._trials: dict[str, Any] = {}  # key -> the optuna trial awaiting its score
        self.history: list[dict[str, Any]] = []  # [{key, params, score}] for plan.json

    def ask(self) -> list[tuple[str, Point]]:
        if len(self.history) >= self.num_samples:
            return []
        trial = self.study.ask(self.space)
        key = str(len(self.history))
        self._trials[key] = trial
        self.history.append({"key": key, "params": dict(trial.params), "score": None})
        return [(key, self._point(trial.params))]

    def tell(self, key: str, score: float) -> None:
        trial = self._trials.pop(key, None)
        if trial is None:
            return
        score = score if math.isfinite(score) else BAD_SCORE
        self.study.tell(trial, score)
        self.history[int(key)]["score"] = score

    def restore(self, history: list[dict[str, Any]]) -> None:
        """Continue from a saved history: told points teach the sampler again, points asked
        but not told wait for their (resumed) trials' scores."""
        FrozenTrial = self._optuna.trial.create_trial
        for h in history:
            if h["score"] is not None:
                self.study.add_trial(
                    FrozenTrial(params=h["params"], distributions=self.space, value=h["score"])
                )
            else:
                self.study.enqueue_trial(h["params"])
                self._trials[h["key"]] = self.study.ask(self.space)
        self.history = [dict(h) for h in history]

    def _point(self, params: dict[str, Any]) -> Point:
        opt_name, sched_name = params["optimizer"], params["schedule"]
        opt = OPTIMIZERS[opt_name]
        given = self._search.args_for(opt_name)
        opt_args = fixed_args(given, opt.defaults)
        searched = searched_args(given, opt.defaults)
        for k in searched:
            key = f"opt.{opt_name}.{k}" if f"opt.{opt_name}.{k}" in params else f"opt.{k}"
            opt_args[k] = float(params[key])
        sched_given = self._search.schedule_args
        sched_args = fixed_args(sched_given, SCHEDULES[sched_name].defaults)
        sched_args.update({k: params[f"sched.{k}"] for k in sched_args if f"sched.{k}" in params})
        own = params.get(f"learning_rate.{opt_name}", params["learning_rate"])
        lr = opt.default_lr if opt.lr_free else float(own)
        return Point(opt_name, sched_name, lr, opt_args, sched_args)
