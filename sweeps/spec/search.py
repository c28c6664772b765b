"""The `search` section: the learning-rate range, optimizer choices (a name, or a name with
its own range and arguments), schedules and their searched arguments."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Light imports only (no JAX): the registries' names and defaults load without it, so a spec
# is validated, and a typo answered, in a fraction of a second (tests/sweeps/test_spec_light.py).
from sweeps.core.args import searched_args
from sweeps.core.optimizers import OPTIMIZER_NAMES, OPTIMIZERS
from sweeps.core.schedules import SCHEDULE_NAMES, SCHEDULES

if TYPE_CHECKING:
    pass


from sweeps.spec.base import Strict, _choose


class LearningRateRange(Strict):
    min: PositiveFloat = 1e-5
    max: PositiveFloat = 10.0
    num: PositiveInt = 25
    scale: Literal["log", "linear"] = "log"

    @model_validator(mode="after")
    def _ordered(self) -> LearningRateRange:
        if self.min >= self.max and not (self.num == 1 and self.min == self.max):
            raise ValueError(f"min ({self.min}) must be smaller than max ({self.max})")
        return self


ArgValue = float | Annotated[list[float], Field(min_length=1)]


class OptimizerChoice(Strict):
    """One optimizer with its own search: ``{name: sgd, learning_rate: {min: 1e-3, max: 10}}``.
    Its `learning_rate` replaces the search's for this optimizer; its `optimizer_args` go on
    top of the search's (key by key)."""

    name: str
    learning_rate: LearningRateRange | None = None
    optimizer_args: dict[str, ArgValue] | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _choose("optimizer", v, OPTIMIZER_NAMES)

    @field_validator("learning_rate")
    @classmethod
    def _has_an_lr(cls, v: LearningRateRange | None, info: ValidationInfo):
        name = info.data.get("name")  # validated first; absent when it was refused
        if v is not None and name in OPTIMIZERS and OPTIMIZERS[name].lr_free:
            raise ValueError(
                f"{name} sets its own step size; a learning-rate range does nothing for it "
                "(leave it out)"
            )
        return v

    @field_validator("optimizer_args")
    @classmethod
    def _takes(cls, v: dict | None, info: ValidationInfo):
        name = info.data.get("name")
        if v is None or name not in OPTIMIZERS:
            return v
        known = sorted(OPTIMIZERS[name].defaults)
        for key in v:
            if key not in known:
                if not known:
                    raise ValueError(f"{name} takes no arguments ('{key}' given)")
                raise ValueError(f"{name} takes no argument '{key}'; valid: {', '.join(known)}")
        return v


class RefineSpec(Strict):
    """Refinement rounds (sweeps/plan/refine.py): after the spec's grid (round 1), each group
    gets new LRs where its answer is still coarser than `ratio`: between its max stable and
    min diverged LR, beside its best LR, and past the searched range (at most `extend` grid
    steps each way) when the best sits on its edge or nothing diverged above it."""

    ratio: float = Field(1.1, gt=1.0, le=10.0)
    max_rounds: int = Field(4, ge=2, le=20)
    extend: int = Field(2, ge=0, le=10)


class PruneSpec(Strict):
    """Rungs (fractions of the steps) where diverged and hopeless lanes stop training."""

    at: list[float] = Field(min_length=1)

    @field_validator("at")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < f < 1.0 for f in v):
            raise ValueError("each rung is a fraction of the steps, between 0 and 1 (exclusive)")
        if sorted(set(v)) != list(v):
            raise ValueError("rungs must be distinct and increasing")
        return v


class SearchSpec(Strict):
    method: Literal["grid", "random", "tpe"] = "grid"
    num_samples: PositiveInt = 32
    seed: int = 0
    learning_rate: LearningRateRange = Field(default_factory=LearningRateRange)
    # A name, or a mapping with the name and that optimizer's own LR range/arguments.
    optimizer: list[str | OptimizerChoice] = Field(default_factory=lambda: ["adam"], min_length=1)
    schedule: list[str] = Field(default_factory=lambda: ["constant"], min_length=1)
    optimizer_args: dict[str, ArgValue] = Field(default_factory=dict)
    schedule_args: dict[str, ArgValue] = Field(default_factory=dict)
    refine: RefineSpec | None = None  # absent: the grid is the answer
    prune: PruneSpec | None = None  # absent: every lane trains every step

    @model_validator(mode="after")
    def _refine_needs_a_grid(self) -> SearchSpec:
        if self.refine is not None and self.method != "grid":
            raise ValueError("refine: refinement rounds refine a grid; set method: grid")
        return self

    @field_validator("optimizer")
    @classmethod
    def _known_optimizers(cls, v: list[str | OptimizerChoice]) -> list[str | OptimizerChoice]:
        for entry in v:
            if isinstance(entry, str):
                _choose("optimizer", entry, OPTIMIZER_NAMES)
        _unique([_name(entry) for entry in v], "optimizer")
        return v

    # -- what the planner, the range test and the budget read about the optimizers ----------
    @property
    def optimizer_names(self) -> list[str]:
        return [_name(entry) for entry in self.optimizer]

    def _choice(self, name: str) -> OptimizerChoice | None:
        return next((e for e in self.optimizer if not isinstance(e, str) and e.name == name), None)

    def lr_range(self, name: str) -> LearningRateRange:
        """The LR range searched for this optimizer: its own, else the search's."""
        choice = self._choice(name)
        own = choice.learning_rate if choice is not None else None
        return own if own is not None else self.learning_rate

    def args_for(self, name: str) -> dict[str, Any]:
        """The optimizer arguments given for this optimizer: the search's, then its own."""
        choice = self._choice(name)
        return {**self.optimizer_args, **((choice.optimizer_args or {}) if choice else {})}

    @field_validator("schedule")
    @classmethod
    def _known_schedules(cls, v: list[str]) -> list[str]:
        return _unique([_choose("schedule", name, SCHEDULE_NAMES) for name in v], "schedule")

    @field_validator("optimizer_args")
    @classmethod
    def _known_optimizer_args(cls, v: dict) -> dict:
        return _check_args("optimizer", v, OPTIMIZERS.values())

    @field_validator("schedule_args")
    @classmethod
    def _known_schedule_args(cls, v: dict) -> dict:
        return _check_args("schedule", v, SCHEDULES.values())

    def unused_args(self) -> list[str]:
        """Arguments that no chosen optimizer/schedule takes (accepted: DESIGN's example
        sets warmup_fraction with only `constant`; `validate` mentions them)."""
        opt_keys = {k for o in self.optimizer_names for k in OPTIMIZERS[o].defaults}
        sched_keys = {k for s in self.schedule for k in SCHEDULES[s].defaults}
        return [f"optimizer_args.{k}" for k in self.optimizer_args if k not in opt_keys] + [
            f"schedule_args.{k}" for k in self.schedule_args if k not in sched_keys
        ]


def _name(entry: str | OptimizerChoice) -> str:
    return entry if isinstance(entry, str) else entry.name


def _unique(names: list[str], kind: str) -> list[str]:
    if len(set(names)) != len(names):
        raise ValueError(f"{kind} names must be distinct")
    return names


def _check_args(kind: str, args: dict[str, Any], owners: Any) -> dict[str, Any]:
    """Refuse argument names that no registered optimizer/schedule takes (typos)."""
    known = sorted({key for owner in owners for key in owner.defaults})
    for key in args:
        if key not in known:
            raise ValueError(f"unknown {kind} argument '{key}'; valid: {', '.join(known)}")
    return args


def _combinations(args: dict[str, Any], defaults: dict[str, float]) -> int:
    """How many argument combinations a grid makes for one optimizer or schedule."""
    return math.prod(len(v) for v in searched_args(args, defaults).values())
