"""The `transfer` section: the values of an axis swept, and the target to predict the best LR at.

```yaml
transfer:
  steps: {values: [250, 500, 1000], target: 8000}
  verify: true   # also sweep at the target and report how far off the prediction was
```

Only `steps` (the training horizon) is an axis today: the lanes of every horizon train in one
program (sweeps/core/population.py), each decaying its schedule to, and stopping at, its own
horizon. `train.steps` is the longest horizon trained: the longest value, or the target with
`verify`; a spec may leave it out or must give that number.
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


class TransferSpec(Strict):
    steps: AxisSpec
    verify: bool = False  # also train at the target: the prediction checked against it

    def horizons(self) -> list[int]:
        """Every horizon trained: the values, and the target with `verify`."""
        extra = [self.steps.target] if self.verify else []
        return sorted(set(self.steps.values) | set(extra))

    @property
    def longest(self) -> int:
        return max(self.horizons())

    def check_against(self, spec: SweepSpec) -> None:
        """The rest of the spec agrees with the axis (ValueErrors naming the field)."""
        t = spec.train
        if t.steps != self.longest:
            what = "the target (verify: true)" if self.verify else "the longest value"
            raise ValueError(
                f"train.steps: {t.steps} is not the longest horizon trained, transfer.steps' "
                f"{what} {self.longest}; leave train.steps out or make them agree"
            )
        field = "transfer.steps.target" if self.verify else "transfer.steps.values"
        for h in self.horizons():
            if h % t.eval_every:
                where = field if h not in self.steps.values else "transfer.steps.values"
                raise ValueError(
                    f"{where}: {h} is not a multiple of train.eval_every ({t.eval_every}): "
                    "each horizon's last validation loss is what is compared"
                )
        if spec.search.method == "tpe":
            raise ValueError("transfer: needs search.method grid or random (tpe scores one run)")
        if spec.scheduler.name != "none":
            raise ValueError("transfer: needs scheduler.name: none (ASHA would cut horizons)")


def fill_train_steps(raw: Any) -> Any:
    """Before validation: a spec with transfer.steps that leaves train.steps out trains for
    the longest horizon. Anything malformed is left for validation to name."""
    try:
        axis = raw["transfer"]["steps"]
        horizons = [*axis["values"]] + ([axis["target"]] if raw["transfer"].get("verify") else [])
        longest = max(h for h in horizons if isinstance(h, int) and not isinstance(h, bool))
        train = raw.get("train", {})
        if not isinstance(train, dict) or "steps" in train:
            return raw
        return {**raw, "train": {**train, "steps": longest}}
    except (KeyError, TypeError, ValueError, AttributeError):
        return raw
