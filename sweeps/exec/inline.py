"""The inline executor: every population trained in this process, one after the other.

The reference the Ray executor is measured against (and the debugging path): no Ray, no
subprocesses. Runs every search method, tpe included: after each population the planner is
told its losses before it is asked for the next.
"""

from __future__ import annotations

from itertools import chain

from sweeps.core.data import Dataset
from sweeps.core.population import Timing
from sweeps.exec.trial import WidthBook, run_trial
from sweeps.plan.planner import Planner
from sweeps.spec import SweepSpec
from sweeps.stream import Dispatcher, TrialPoint


class InlineExecutor:
    name = "inline"

    def __init__(self, spec: SweepSpec, data: Dataset, widths: WidthBook | None = None):
        self.spec = spec
        self.data = data
        # the widths the driver decided (None: each population's default rule)
        self.widths = widths

    def run(self, planner: Planner, dispatcher: Dispatcher, *, resume: bool = False) -> Timing:
        # Nothing of an interrupted inline sweep is kept but its MLflow runs: `resume` trains
        # it again from the start (the tracker reuses the runs and skips logged steps). An
        # adaptive plan restored from plan.json asks only for new points: the populations it
        # already made (scored, or cut short by the stop) are trained again first, or their
        # lanes would end FAILED and leave the report.
        timing = Timing()
        # (A refining plan restored from plan.json likewise: its rounds so far.)
        restored = planner.adaptive or planner.refine is not None
        again = list(planner.populations) if resume and restored else []
        for pop in chain(again, iter(planner.ask, None)):
            dispatcher.trial_started(pop.id)
            last, before = None, timing.train_s
            width = self.widths.width(pop) if self.widths else None
            threads = self.widths.threads if self.widths else None
            trial = run_trial(
                self.spec, pop, self.data, timing=timing, width=width, threads=threads
            )
            for point in trial:
                trained = timing.train_s - before
                dispatcher.point(TrialPoint.of(pop.id, point, timing.compile_s, trained))
                last = point
            if last is not None:
                planner.tell(pop.id, last.val_loss)
            dispatcher.trial_ended(pop.id)
        return timing


def train_inline(spec: SweepSpec, data: Dataset, planner: Planner | None = None) -> list:
    """Train a whole plan in this process, with no tracking and no sweep folder (notebooks,
    tests): the lanes' results, in lane order."""
    planner = planner or Planner(spec)
    dispatcher = Dispatcher(
        spec.metric_name,
        spec.train.steps,
        planner.expected_trials,
        planner.expected_lanes,
    )
    planner.subscribe(dispatcher.add_population)
    from sweeps.verdict.analysis import analyze_for

    planner.follow(dispatcher, analyze_for)
    InlineExecutor(spec, data).run(planner, dispatcher)
    return dispatcher.results()
