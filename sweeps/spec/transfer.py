"""The `transfer` section: the values of an axis swept, and the target to predict the best LR at.

```yaml
transfer:
  steps: {values: [250, 500, 1000], target: 8000}
  verify: true   # also sweep at the target and report how far off the prediction was
```

One axis at a time: `steps` (the training horizon: the lanes of every horizon train in one
program, sweeps/core/program.py, each decaying its schedule to, and stopping at, its own
horizon) or `batch_size` (one population per batch size: a batch size is a structure).
`train.steps` (`train.batch_size`) is the largest value trained: the largest value, or the
target with `verify`; a spec may leave it out or must give that number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, PositiveInt, model_validator

# Light imports only (no JAX): see sweeps/spec/schema.py.
from sweeps.spec.base import Strict

if TYPE_CHECKING:
    from sweeps.spec.schema import SweepSpec


class AxisSpec(Strict):
    """Values swept (at least two, for a trend) and the target value to predict at."""

    values: list[PositiveInt] = Field(min_length=2)
    target: PositiveInt

    @model_validator(mode="after")
    def _distinct(self) -> AxisSpec:
        if len(set(self.values)) != len(self.values):
            raise ValueError("values must be distinct")
        self.values = sorted(self.values)
        return self


class WidthAxisSpec(AxisSpec):
    """A scalar argument of the model (`arg`: `d_model` of the transformer, a user model's
    `width`, ...) swept and predicted at like any axis."""

    arg: str = Field(min_length=1)


AXES = ("steps", "batch_size", "width")


class TransferSpec(Strict):
    steps: AxisSpec | None = None  # training horizons: one program trains them all
    batch_size: AxisSpec | None = None  # batch sizes: one population (a structure) each
    width: WidthAxisSpec | None = None  # a model argument: one population (a structure) each
    verify: bool = False  # also train at the target: the prediction checked against it

    @model_validator(mode="after")
    def _one_axis(self) -> TransferSpec:
        if sum(getattr(self, a) is not None for a in AXES) != 1:
            raise ValueError("give one axis: transfer.steps, transfer.batch_size or transfer.width")
        return self

    @property
    def axis_name(self) -> str:
        return next(a for a in AXES if getattr(self, a) is not None)

    @property
    def axis(self) -> AxisSpec:
        return getattr(self, self.axis_name)

    def model_at(self, model: Any, value: int) -> Any:
        """The spec's model with the width axis' argument set to `value`."""
        arg = self.width.arg
        if hasattr(model, "args"):  # a user's model: {import: ..., args: {...}}
            return model.model_copy(update={"args": {**model.args, arg: value}})
        return type(model).model_validate({**model.model_dump(by_alias=True), arg: value})

    def trained(self) -> list[int]:
        """Every value trained: the axis' values, and the target with `verify`."""
        extra = [self.axis.target] if self.verify else []
        return sorted(set(self.axis.values) | set(extra))

    def horizons(self) -> list[int]:
        return self.trained() if self.steps is not None else []

    def batch_sizes(self) -> list[int]:
        return self.trained() if self.batch_size is not None else []

    @property
    def longest(self) -> int:
        return max(self.trained())

    def check_against(self, spec: SweepSpec) -> None:
        """The rest of the spec agrees with the axis (ValueErrors naming the field)."""
        t = spec.train
        if self.search_forbids(spec):
            raise ValueError(self.search_forbids(spec))
        if self.width is not None:
            self._check_width(spec.model)
            return
        if self.batch_size is not None:
            if t.batch_size != self.longest:
                raise ValueError(
                    f"train.batch_size: {t.batch_size} is not the largest batch trained, "
                    f"{self.longest} (transfer.batch_size); leave train.batch_size out or make "
                    "them agree"
                )
            return
        if t.steps != self.longest:
            what = "target (verify: true)" if self.verify else "longest value"
            raise ValueError(
                f"train.steps: {t.steps} is not the longest horizon trained, {self.longest} "
                f"(the {what} of transfer.steps); leave train.steps out or make them agree"
            )
        field = "transfer.steps.target" if self.verify else "transfer.steps.values"
        for h in self.horizons():
            if h % t.eval_every:
                where = field if h not in self.steps.values else "transfer.steps.values"
                raise ValueError(
                    f"{where}: {h} is not a multiple of train.eval_every ({t.eval_every}): "
                    "each horizon's last validation loss is what is compared"
                )

    def _check_width(self, model: Any) -> None:
        """The model takes the argument, at every value; a model that names it must name the
        largest value trained (what the memory budget is checked against)."""
        arg = self.width.arg
        if not hasattr(model, "args") and arg not in type(model).model_fields:
            fields = ", ".join(f for f in type(model).model_fields if f != "name")
            raise ValueError(
                f"transfer.width.arg: the {model.name} model has no argument '{arg}' "
                f"(it takes: {fields})"
            )
        for v in self.trained():
            try:
                self.model_at(model, v)
            except ValueError as err:
                raise ValueError(f"transfer.width.values: {arg}={v}: {err}") from None
        given = model.args.get(arg) if hasattr(model, "args") else (
            getattr(model, arg) if arg in model.model_fields_set else None
        )  # fmt: skip
        if given is not None and given != self.longest:
            raise ValueError(
                f"model.{arg}: {given} is not the largest width trained, {self.longest} "
                f"(transfer.width); leave it out or make them agree"
            )

    @staticmethod
    def search_forbids(spec: SweepSpec) -> str | None:
        if spec.search.method == "tpe":
            return "transfer: needs search.method grid or random (tpe scores one run)"
        if spec.scheduler.name != "none":
            return "transfer: needs scheduler.name: none (ASHA would cut runs short)"
        return None


def fill_train_steps(raw: Any) -> Any:
    """Before validation: a spec with a transfer axis that leaves the matching train field out
    (train.steps, train.batch_size) gets the axis' largest value trained. Anything malformed is
    left for validation to name."""
    for name in ("steps", "batch_size"):
        try:
            axis = raw["transfer"][name]
            trained = [*axis["values"]] + (
                [axis["target"]] if raw["transfer"].get("verify") else []
            )
            largest = max(h for h in trained if isinstance(h, int) and not isinstance(h, bool))
            train = raw.get("train", {})
            if isinstance(train, dict) and name not in train:
                raw = {**raw, "train": {**train, name: largest}}
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return raw
