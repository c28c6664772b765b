"""What every executor is: it trains the planner's populations and streams their eval points.

An executor asks the planner for populations (`ask`, until None), trains each as one trial,
sends every eval point to the dispatcher (`point`), tells the planner each trial's final
losses (`tell`, which adaptive searchers learn from) and returns how long it took. It never
makes lanes and never talks to MLflow: the dispatcher and its sinks do that on the driver.
"""

from __future__ import annotations

from typing import Protocol

from sweeps.core.population import Timing
from sweeps.plan.planner import Planner
from sweeps.stream import Dispatcher


class Executor(Protocol):
    name: str

    def run(self, planner: Planner, dispatcher: Dispatcher, *, resume: bool = False) -> Timing:
        """Train every population the planner hands out; raise SweepInterrupted or
        SweepFailed when not every trial finished."""
        ...
