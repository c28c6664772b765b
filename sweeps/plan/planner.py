"""The planner: the only place lanes are made, for every search method.

It asks its searcher for points, trains each point once per seed (lanes numbered in the order
they are made) and groups the lanes into populations. A fixed search (grid, random) is planned
whole at construction; an adaptive one (tpe) makes one population per point whenever an
executor asks for the next one, and hears back its score. Whoever needs to know about new
lanes (the dispatcher: recorders, MLflow runs, progress) subscribes.

With `search.refine`, the grid is round 1: once every population of a round has ended, the
planner reads the lanes' results (`follow`: the dispatcher's record), analyses each group and
plans the next round's lanes where the answer is still coarse (sweeps/plan/refine.py), until
`max_rounds` or a round with nothing to add. A later round's populations train at the slice
width their structure's first population trained at: its compiled programs are reused.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sweeps.core.schedules import HORIZON
from sweeps.folder import read_object, write_json_atomic
from sweeps.plan.lanes import (
    Lane,
    Point,
    Population,
    at_horizons,
    at_structures,
    group_populations,
    lane_steps_of,
    lanes_of,
)
from sweeps.plan.refine import Extended, next_lrs
from sweeps.plan.search import Searcher, make_searcher, trial_score
from sweeps.spec import SweepSpec

log = logging.getLogger(__name__)


class Record(Protocol):
    """What a refining planner reads back (the dispatcher, sweeps/stream.py)."""

    finished: set[str]  # population ids whose trials ended
    widths: dict[str, int]  # population id -> lanes per compiled slice it trained at

    def results(self) -> list: ...  # LaneResults so far


class Planner:
    def __init__(
        self, spec: SweepSpec, searcher: Searcher | None = None, max_lanes: int | None = None
    ):
        self.spec = spec
        self.max_lanes = max_lanes  # GOLDILOCKS_MAX_LANES: refinement stops short of it
        self.searcher = searcher or make_searcher(spec)
        self.adaptive = self.searcher.adaptive
        self.populations: list[Population] = []
        self._key_of: dict[str, str] = {}  # population id -> searcher key
        self._subscribers: list[Callable[[Population], None]] = []
        self._cursor = 0  # fixed plans: the next population `ask` hands out
        self._save_to: Path | None = None
        self.refine = spec.search.refine
        self.round = 1
        self._extended: dict[str, Extended] = {}  # group -> grid steps past the range
        self._record: Record | None = None
        self._analyze: Callable | None = None  # analyze(spec, results): see follow
        self._refined_out = False  # a round added nothing: refinement is over
        self._ended: set[str] = set()  # population ids whose trials ended (told, or failed)
        if not self.adaptive:
            self._make(self.searcher.ask())

    # ---- what the sweep will train
    @property
    def lanes(self) -> list[Lane]:
        return [lane for pop in self.populations for lane in pop.lanes]

    @property
    def refining(self) -> bool:
        """Lanes are still to be planned from results (search.refine, rounds left)."""
        return (
            self.refine is not None
            and not self._refined_out
            and self.round < self.refine.max_rounds
        )

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
    def follow(self, record: Record, analyze: Callable) -> None:
        """Read lanes' results from `record` to plan refinement rounds (search.refine), each
        from the groups' verdicts that `analyze(spec, results)` gives (the verdict's own
        `analyze_for`, passed in: the verdict package reads the plan's lanes, not the reverse)."""
        self._record, self._analyze = record, analyze

    @property
    def waiting(self) -> bool:
        """A round's populations are handed out but not all ended: the next round (if any)
        cannot be planned yet. (`ask` answers None meanwhile; Ray's searcher waits.)"""
        if not self.refining or self._record is None:
            return False
        # Ended: its trial said so, or (points replayed on a resume) every lane is complete.
        steps = self.spec.train.steps
        complete = {
            r.lane.index
            for r in self._record.results()
            if r.step and r.step[-1] >= lane_steps_of(r.lane, steps, HORIZON)
        }
        return any(
            p.id not in self._ended
            and p.id not in self._record.finished
            and any(x.index not in complete for x in p.lanes)
            for p in self.populations
        )

    def ask(self) -> Population | None:
        """The next population to train, or None when the plan is done (or `waiting`)."""
        if not self.adaptive:
            if self._cursor >= len(self.populations) and not self._next_round():
                return None
            self._cursor += 1
            return self.populations[self._cursor - 1]
        made = self._make(self.searcher.ask())
        return made[0] if made else None

    def ended(self, population_id: str) -> None:
        """A population's trial ended, well or not (a failed one must not hold up a round)."""
        self._ended.add(population_id)

    def tell(self, population_id: str, val_loss) -> None:
        """A population finished: its final validation losses score its point."""
        self._ended.add(population_id)
        key = self._key_of.get(population_id)
        if key is None or not self.adaptive:
            return
        self.searcher.tell(key, trial_score(self.spec.search.method, val_loss))
        self._save()

    def score(self, val_loss) -> float:
        return trial_score(self.spec.search.method, val_loss)

    # ---- persistence (adaptive searches: resume continues the same search)
    def persist(self, path: Path, *, resume: bool = False) -> None:
        """Keep the adaptive (or refining) plan in `path`; with `resume`, first continue from
        it."""
        if not self.adaptive and self.refine is None:
            return
        self._save_to = Path(path)
        # A plan that is there but unreadable raises (FolderError): planning afresh would
        # run another search under the runs of this one.
        saved = read_object(self._save_to) if resume and self._save_to.exists() else None
        if not self.adaptive:
            if saved:
                self._restore_rounds(saved)
            if resume:  # like an adaptive plan's: handed out already (the executor trains
                self._cursor = len(self.populations)  # them again, or Tune restores them)
        elif saved:
            self.searcher.restore(saved["searcher"])
            for d in saved["populations"]:
                pop = Population.from_json(d["population"])
                self._add(pop, d["key"])
        self._save()

    def _save(self) -> None:
        if self._save_to is None:
            return
        if not self.adaptive:  # refinement rounds: the rounds planned, and how far they went
            write_json_atomic(
                self._save_to,
                {
                    "round": self.round,
                    "refined_out": self._refined_out,
                    "extended": {k: dataclasses.asdict(e) for k, e in self._extended.items()},
                    "populations": [p.to_json() for p in self.populations],
                },
            )
            return
        history: Any = getattr(self.searcher, "history", [])
        pops = [{"key": self._key_of[p.id], "population": p.to_json()} for p in self.populations]
        write_json_atomic(self._save_to, {"searcher": history, "populations": pops})

    def _restore_rounds(self, saved: dict[str, Any]) -> None:
        """Resume a refining sweep: the rounds planned before (round 1 is the spec's grid, made
        again identically) come back, to be trained again, and refinement goes on from them."""
        known = {p.id for p in self.populations}
        for d in saved.get("populations", []):
            if d["id"] not in known:
                self._add(Population.from_json(d), None)
        self.round = int(saved.get("round", 1))
        self._refined_out = bool(saved.get("refined_out", False))
        self._extended = {k: Extended(**e) for k, e in saved.get("extended", {}).items()}

    # ---- refinement rounds
    def _next_round(self) -> bool:
        """Plan the next refinement round from the results so far; False if there is none
        (refinement off or over, or the current round still training)."""
        if not self.refining or self._record is None or self.waiting:
            return False
        spec = self.spec
        # copies: analysis sets statuses on what it reads, and the record is the sweep's
        results = [copy.copy(r) for r in self._record.results()]
        verdicts, _ = self._analyze(spec, results)
        r = spec.search.learning_rate
        step = (r.max / r.min) ** (1.0 / (r.num - 1)) if r.num > 1 else 10.0
        points: list[Point] = []
        for v in verdicts:
            if v.lr_free:
                continue
            key = json.dumps([v.optimizer, v.schedule, sorted(v.optimizer_args.items()),
                              sorted(v.schedule_args.items())]
                             + [x for x in (v.batch_size, v.model_width) if x is not None])  # fmt: skip
            lrs = next_lrs(
                v.curve["learning_rate"], v.best_lr, v.max_undiverged_lr, v.min_diverged_lr,
                ratio=self.refine.ratio, rounds_left=self.refine.max_rounds - self.round,
                step=step, extend=self.refine.extend,
                extended=self._extended.setdefault(key, Extended()),
            )  # fmt: skip
            points += [
                Point(
                    v.optimizer,
                    v.schedule,
                    lr,
                    dict(v.optimizer_args),
                    dict(v.schedule_args),
                    v.batch_size,
                    v.model_width,
                )
                for lr in lrs
            ]
        room = (self.max_lanes or float("inf")) - len(self.lanes)
        if points and len(points) * len(spec.train.seeds) > room:
            log.warning(
                "refinement stops: round %d would pass GOLDILOCKS_MAX_LANES", self.round + 1
            )
            points = []
        if not points:
            self._refined_out = True
            self._save()
            return False
        self.round += 1
        self._make([(str(i), p) for i, p in enumerate(points)])
        self._save()
        return True

    def _width_of(self, pop: Population) -> int | None:
        """The slice width the first trained population of this structure used."""
        widths = self._record.widths if self._record is not None else {}

        def structure(p: Population) -> tuple:
            return (p.optimizer, p.schedule, p.batch_size, p.model_width)

        for p in self.populations:
            if structure(p) == structure(pop) and widths.get(p.id):
                return int(widths[p.id])
        return None

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
        points = [point for _, point in asked]
        transfer = self.spec.transfer
        if transfer is not None and transfer.steps is not None:
            points = at_horizons(points, transfer.horizons(), HORIZON)
        if transfer is not None and transfer.batch_size is not None:
            points = at_structures(points, "batch_size", transfer.trained())
        if transfer is not None and transfer.width is not None:
            points = at_structures(points, "model_width", transfer.trained())
        lanes = lanes_of(points, seeds, first, self.round)
        cap = self.spec.resources.max_lanes_per_trial
        for pop in group_populations(lanes, cap, first=len(self.populations)):
            if self.round > 1:
                pop = dataclasses.replace(pop, width=self._width_of(pop))
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
