"""How a sweep becomes a Ray Tune experiment: the trials' configs, the search algorithm that
asks the planner for populations, the scheduler, and trial names.

A fixed plan (grid, random) is a `tune.grid_search` over the planned populations' indices.
An adaptive one (tpe), or a grid refined in rounds (search.refine), is a Tune `Searcher` whose
`suggest` asks the driver's planner for the next population and whose `on_trial_complete`
tells the planner its score: the planner makes the lanes, Tune only schedules them. Between
refinement rounds the planner waits for the round's trials to end (`suggest` answers None:
Tune asks again), so a round's lanes are new trials. Like the callback, the searcher holds only a key (Tune
pickles it with its experiment state); the live planner is looked up in `_PLANNERS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import tune
from ray.tune.search import Searcher

from sweeps.plan.planner import Planner
from sweeps.spec import SweepSpec

_PLANNERS: dict[str, Planner] = {}
_WIDTHS: dict[str, Any] = {}  # the driver's WidthBook: a new population's width goes with it


def register(key: str, planner: Planner, widths=None) -> None:
    _PLANNERS[key] = planner
    _WIDTHS[key] = widths


def unregister(key: str) -> None:
    _PLANNERS.pop(key, None)
    _WIDTHS.pop(key, None)


class PlannerSearcher(Searcher):
    """Tune's side of the planner's ask/tell: one trial per population it hands out."""

    def __init__(self, key: str):
        super().__init__(metric="score", mode="min")
        self.key = key
        self._population_of: dict[str, str] = {}  # Tune trial id -> population id

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the planner's searcher owns the space; the metric is always "score"

    def suggest(self, trial_id: str) -> dict | str | None:
        planner = _PLANNERS[self.key]
        pop = planner.ask()
        if pop is None:
            return None if planner.waiting else Searcher.FINISHED
        self._population_of[trial_id] = pop.id
        widths = _WIDTHS.get(self.key)
        return {"population": pop.to_json(), "width": widths.width(pop) if widths else None}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        pid = self._population_of.pop(trial_id, None)
        if pid is None and result:
            pid = result.get("population_id")
        if pid is not None:
            _PLANNERS[self.key].ended(pid)
        if pid is not None and result and not error:
            _PLANNERS[self.key].tell(pid, np.asarray(result["val_loss"], float))

    # The planner keeps its own state (plan.json in the sweep folder): nothing to save here.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass


def searched(planner: Planner) -> bool:
    """Whether Tune asks the planner for each trial (adaptive or refined) or runs a fixed grid."""
    return planner.adaptive or planner.refine is not None


def max_trials(planner: Planner) -> int:
    """Tune's num_samples: a bound for a refined grid (the planner says when it is done)."""
    if planner.adaptive:
        return planner.expected_trials
    rounds = planner.refine.max_rounds if planner.refine is not None else 1
    return max(1, len(planner.populations)) * rounds * 64


def param_space(planner: Planner, one_trial: bool = False) -> dict[str, Any]:
    """A trial per planned population (its index), or `one_trial` for them all (the list of
    indices, trained in order: see cluster.one_trial_per_host); nothing when Tune asks the
    planner for each trial."""
    if searched(planner):
        return {}
    indices = list(range(len(planner.populations)))
    return {"population": tune.grid_search([indices] if one_trial else indices)}


def tune_config(spec: SweepSpec, planner: Planner, key: str) -> tune.TuneConfig:
    scheduler = None
    if spec.scheduler.name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=-(-spec.train.steps // spec.train.eval_every) + 1,
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
        )
    asks = searched(planner)
    ids = [pop.id for pop in planner.populations]  # not the planner: Tune pickles these
    return tune.TuneConfig(
        metric="score",
        mode="min",
        scheduler=scheduler,
        search_alg=PlannerSearcher(key) if asks else None,
        num_samples=max_trials(planner) if asks else 1,
        max_concurrent_trials=spec.resources.max_concurrent_trials,
        # A trial process keeps JAX imported and its compiled programs for the next trial.
        reuse_actors=True,
        trial_name_creator=lambda trial: trial_name(trial, ids),
        trial_dirname_creator=lambda trial: trial_name(trial, ids),
    )


def trial_name(trial, ids: list[str]) -> str:
    """The population's id: the trial's folder and name in Tune say what it trains."""
    ref = trial.config.get("population")
    if isinstance(ref, list):  # one trial for several populations: the first and last
        return ids[ref[0]] if len(ref) == 1 else f"{ids[ref[0]]}--{ids[ref[-1]]}"
    return ref["id"] if isinstance(ref, dict) else ids[ref]
