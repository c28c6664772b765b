"""Progress of a sweep, as executors report it (shown by the CLI, served by the API)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Progress:
    lane_steps_done: int = 0
    lane_steps_total: int = 0
    lanes_total: int = 0
    trials_done: int = 0
    trials_total: int = 0
    trials_running: int = 0

    @property
    def fraction(self) -> float:
        return self.lane_steps_done / self.lane_steps_total if self.lane_steps_total else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "fraction": round(self.fraction, 4)}


ProgressCallback = Callable[[Progress], None]
