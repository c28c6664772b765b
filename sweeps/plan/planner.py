"""The planner: the only place lanes are made, for every search method.

It asks its searcher for points, trains each point once per seed (lanes numbered in the order
they are made) and groups the lanes into populations. A fixed search (grid, random) is planned
whole at construction; an adaptive one (tpe) makes one population per point whenever an
executor asks for the next one, and hears back its score. Whoever needs to know about new
lanes (the dispatcher: recorders, MLflow runs, progress) subscribes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweeps.folder import read_object, write_json_atomic
from sweeps.plan.lanes import Lane, Population, group_populations, lanes_of
from sweeps.plan.search import Searcher, make_searcher, trial_score
from sweeps.spec import SweepSpec


class Planner:
    def __init__(self, spec: SweepSpec, searcher: Searcher | None = None):
        self.spec = spec
        self.searcher = searcher or make_searcher(spec)
        self.adaptive = self.searcher.adaptive
        self.populations: list[Population] = []
        self._key_of: dict[str, str] = {}  # population id -> searcher key
        self._subscribers: list[Callable[[Population], None]] = []
        self._cursor = 0  # fixed plans: the next population `ask` hands out
        self._save_to: Path | None = None
        if not self.adaptive:
            self._make(self.searcher.ask())

    # ---- what the sweep will train
    @property
    def lanes(self) -> list[Lane]:
        return [lane for pop in self.populations for lane in pop.lanes]

    @property
    def expected_trials(self) -> int:
        return self.spec.search.num_samples if self.adaptive else len(self.populations)

    @property
    def expected_lanes(self) -> int:
        if self.adaptive:
            return self.spec.search.num_samples * len(self.spec.train.seeds)
        return len(self.lanes)

    def subscribe(self, fn: Callable[[Population], None]) -> None:
        """Call `fn` with every population, those planned already first."""
        self._subscribers.append(fn)
        for pop in self.populations:
            fn(pop)

    # ---- the executor's side
    def ask(self) -> Population | None:
        """The next population to train, or None when the plan is done."""
        if not self.adaptive:
            if self._cursor >= len(self.populations):
                return None
            self._cursor += 1
            return self.populations[self._cursor - 1]
        made = self._make(self.searcher.ask())
        return made[0] if made else None

    def tell(self, population_id: str, val_loss) -> None:
        """A population finished: its final validation losses score its point."""
        key = self._key_of.get(population_id)
        if key is None or not self.adaptive:
            return
        self.searcher.tell(key, trial_score(self.spec.search.method, val_loss))
        self._save()

    def score(self, val_loss) -> float:
        return trial_score(self.spec.search.method, val_loss)

    # ---- persistence (adaptive searches: resume continues the same search)
    def persist(self, path: Path, *, resume: bool = False) -> None:
        """Keep the adaptive plan in `path`; with `resume`, first continue from it."""
        if not self.adaptive:
            return
        self._save_to = Path(path)
        # A plan that is there but unreadable raises (FolderError): planning afresh would
        # run another search under the runs of this one.
        saved = read_object(self._save_to) if resume and self._save_to.exists() else None
        if saved:
            self.searcher.restore(saved["searcher"])
            for d in saved["populations"]:
                pop = Population.from_json(d["population"])
                self._add(pop, d["key"])
        self._save()

    def _save(self) -> None:
        if self._save_to is None:
            return
        history: Any = getattr(self.searcher, "history", [])
        pops = [{"key": self._key_of[p.id], "population": p.to_json()} for p in self.populations]
        write_json_atomic(self._save_to, {"searcher": history, "populations": pops})

    # ---- the one place lanes are made
    def _make(self, asked: list) -> list[Population]:
        if not asked:
            return []
        seeds = list(self.spec.train.seeds)
        first = len(self.lanes)
        made: list[Population] = []
        if self.adaptive:  # one population per point: its score is the point's
            for key, point in asked:
                lanes = lanes_of([point], seeds, first)
                first += len(lanes)
                pid = f"p{len(self.populations):03d}-{point.optimizer}-{point.schedule}"
                pop = Population(pid, point.optimizer, point.schedule, tuple(lanes))
                self._add(pop, key)
                made.append(pop)
            self._save()
            return made
        lanes = lanes_of([point for _, point in asked], seeds, first)
        cap = self.spec.resources.max_lanes_per_trial
        for pop in group_populations(lanes, cap, first=len(self.populations)):
            self._add(pop, None)
            made.append(pop)
        return made

    def _add(self, pop: Population, key: str | None) -> None:
        self.populations.append(pop)
        if key is not None:
            self._key_of[pop.id] = key
        for fn in self._subscribers:
            fn(pop)


def expand_lanes(spec: SweepSpec) -> list[Lane]:
    """Every lane of a fixed (grid/random) sweep, in a stable order."""
    return Planner(spec).lanes


def plan_populations(spec: SweepSpec) -> list[Population]:
    """The populations of a fixed (grid/random) sweep."""
    return Planner(spec).populations
