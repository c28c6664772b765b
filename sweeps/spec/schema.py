"""The sweep spec as pydantic models: data, model, loss, train, early stopping, analysis,
scheduler, resources and the whole `SweepSpec`; `parse_spec` and its field-named errors."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

# Light imports only (no JAX): the registries' names and defaults load without it, so a spec
# is validated, and a typo answered, in a fraction of a second (tests/sweeps/test_spec_light.py).
from models.mup import MUP_OPTIMIZERS
from models.specs import MODEL_NAMES, ImportModelSpec, ModelSpec, check_import_ref, ref_name
from sweeps.core.data import BUILTIN_DATASETS, SIZED_DATASETS, TEXT_DATASETS
from sweeps.core.losses import LOSS_NAMES, LOSSES
from sweeps.core.optimizers import OPTIMIZERS
from sweeps.core.schedules import SCHEDULES
from sweeps.errors import SpecError

if TYPE_CHECKING:
    pass


from sweeps.spec.base import Strict, _choose
from sweeps.spec.search import SearchSpec, _combinations
from sweeps.spec.transfer import TransferSpec, fill_train_steps


class ImportRef(Strict):
    """The user's own object: ``{import: "file.py:name"}`` or ``{import: "pkg.mod:name"}``."""

    model_config = ConfigDict(
        extra="forbid", strict=True, populate_by_name=True, serialize_by_alias=True
    )

    import_: str = Field(alias="import")

    _ref = field_validator("import_")(classmethod(lambda cls, v: check_import_ref(v)))

    @property
    def name(self) -> str:
        return ref_name(self.import_)


class DataSpec(Strict):
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, strict=True, populate_by_name=True,
        serialize_by_alias=True,
    )  # fmt: skip

    name: str | None = None
    path: str | None = None
    text: str | None = None  # a text file: character-level next-token windows
    import_: str | None = Field(None, alias="import")  # a loader: "data.py:load"
    args: dict[str, Any] = Field(default_factory=dict)  # the loader's keyword arguments
    dataset: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")  # uploaded (service)
    target: str | None = None
    task: Literal["regression", "classification"] | None = None
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    standardize: bool = True
    block_size: PositiveInt | None = None  # text datasets: characters per example
    n_samples: PositiveInt | None = None  # rows a synthetic built-in draws (teacher)

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v: str | None) -> str | None:
        return v if v is None else _choose("dataset", v, BUILTIN_DATASETS)

    @field_validator("import_")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        return v if v is None else check_import_ref(v)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        sources = [self.name, self.path, self.text, self.import_, self.dataset]
        if sum(v is not None for v in sources) != 1:
            raise ValueError(
                "give exactly one of data.name (a built-in dataset), data.path (a csv, npz or "
                "parquet file), data.text (a text file), data.import (a loader function) or "
                "data.dataset (an uploaded dataset's id)"
            )
        if self.block_size is not None and not self.is_text and self.dataset is None:
            raise ValueError("data.block_size: only for text datasets (data.text, pydoc_topics)")
        if self.n_samples is not None and self.name not in SIZED_DATASETS:
            raise ValueError(f"data.n_samples: only for {', '.join(SIZED_DATASETS)}")
        if self.args and self.import_ is None:
            raise ValueError("data.args: only for a loader function (data.import)")
        return self

    @property
    def is_text(self) -> bool:
        return self.text is not None or self.name in TEXT_DATASETS


class MetricsSpec(Strict):
    """The user's metrics: ``fn(pred, y) -> {name: scalar}``; `metric` is the one the verdict
    reports (`val_metric`), better when higher unless `higher_is_better: false`."""

    model_config = ConfigDict(
        extra="forbid", strict=True, populate_by_name=True, serialize_by_alias=True
    )

    import_: str = Field(alias="import")
    metric: str = Field(min_length=1)
    higher_is_better: bool = True

    _ref = field_validator("import_")(classmethod(lambda cls, v: check_import_ref(v)))


class TrainSpec(Strict):
    steps: PositiveInt = 500
    batch_size: PositiveInt | Literal["full"] = 128
    eval_every: PositiveInt = 25
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    data_seed: int = 0  # the train/validation split and the minibatch order, shared by lanes

    @model_validator(mode="after")
    def _eval_within_steps(self) -> TrainSpec:
        if self.eval_every > self.steps:
            raise ValueError(f"eval_every ({self.eval_every}) is larger than steps ({self.steps})")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        return self


class EarlyStoppingSpec(Strict):
    diverge_factor: float = Field(4.0, gt=1.0)
    # Steps a lane may stay above diverge_factor x its initial loss before it is frozen as
    # diverged: a shorter spike that comes back is "unstable", not divergence.
    patience: PositiveInt = 20


class AnalysisSpec(Strict):
    # An LR is in the zone when its validation loss is within zone_tolerance of the best LR's
    # improvement over the initial loss. 5 %: measured on the examples, every LR in the zone
    # then ends within ~1.5 accuracy points of the best (benchmarks/zone_rule.py).
    zone_tolerance: float = Field(0.05, gt=0.0, lt=1.0)
    # A lane whose training loss fell by less than this fraction of its initial loss stagnated.
    stagnation_tolerance: float = Field(0.05, gt=0.0, lt=1.0)


class SchedulerSpec(Strict):
    name: Literal["none", "asha"] = "none"
    grace_period: PositiveInt = 1  # in eval points
    reduction_factor: float = Field(3.0, gt=1.0)


TPU_CHIPS = (0, 1, 2, 4, 8)


class ResourcesSpec(Strict):
    cpus_per_trial: PositiveFloat = 1.0
    gpus_per_trial: float = Field(0.0, ge=0.0)  # below 1: trials share a GPU
    tpus_per_trial: int = Field(0, ge=0)  # Ray's "TPU" resource, whole chips
    max_concurrent_trials: PositiveInt = 2
    max_lanes_per_trial: PositiveInt = 256
    max_failures: int = Field(1, ge=-1)

    @field_validator("gpus_per_trial")
    @classmethod
    def _gpu_share(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError("a fraction of a GPU is below 1; above 1, whole GPUs (2, 3, ...)")
        return v

    @field_validator("tpus_per_trial")
    @classmethod
    def _whole_chips(cls, v: int) -> int:
        if v not in TPU_CHIPS:
            # JAX takes every chip it can see: a fraction of a TPU cannot be shared safely.
            raise ValueError(f"{v} TPU chips: use one of {', '.join(map(str, TPU_CHIPS))}")
        return v

    @model_validator(mode="after")
    def _one_accelerator(self) -> ResourcesSpec:
        if self.gpus_per_trial and self.tpus_per_trial:
            raise ValueError("gpus_per_trial and tpus_per_trial: choose one accelerator")
        return self

    @property
    def accelerator(self) -> Literal["cpu", "cuda", "tpu"]:
        """The JAX platform the trials must run on."""
        return "tpu" if self.tpus_per_trial else "cuda" if self.gpus_per_trial else "cpu"


class SweepSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    experiment: str = Field("goldilocks", min_length=1, max_length=256)
    data: DataSpec
    model: ModelSpec
    loss: str | ImportRef  # a built-in name, or {import: "losses.py:my_loss"}
    metrics: MetricsSpec | None = None
    train: TrainSpec = Field(default_factory=TrainSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    early_stopping: EarlyStoppingSpec = Field(default_factory=EarlyStoppingSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    transfer: TransferSpec | None = None  # absent: no prediction beyond the runs trained

    _train_steps_from_transfer = model_validator(mode="before")(
        classmethod(lambda cls, raw: fill_train_steps(raw))
    )

    @field_validator("name")
    @classmethod
    def _not_dots(cls, v: str) -> str:
        if set(v) <= {"."}:
            raise ValueError("name cannot be only dots")
        return v

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, v: str | ImportRef) -> str | ImportRef:
        if isinstance(v, str) and v not in LOSS_NAMES:
            raise ValueError(
                f"unknown loss '{v}'; choose one of: {', '.join(LOSS_NAMES)}, or your own "
                "with {import: 'losses.py:my_loss'}"
            )
        return v

    # -- what the rest of the pipeline reads about the loss --------------------------------
    @property
    def loss_key(self) -> str:
        """The loss as the trainer finds it: a built-in name or an import reference."""
        return self.loss if isinstance(self.loss, str) else self.loss.import_

    @property
    def loss_name(self) -> str:
        """The loss as tables show it: `cross_entropy`, or the user function's name."""
        return self.loss if isinstance(self.loss, str) else self.loss.name

    @property
    def metric_name(self) -> str:
        if self.metrics is not None:
            return self.metrics.metric
        return LOSSES[self.loss].metric if isinstance(self.loss, str) else "loss"

    @property
    def higher_is_better(self) -> bool:
        if self.metrics is not None:
            return self.metrics.higher_is_better
        return LOSSES[self.loss].higher_is_better if isinstance(self.loss, str) else False

    def import_refs(self) -> dict[str, str]:
        """Every import reference in the spec, by field (`model.import`, `loss.import`, ...)."""
        refs = {}
        if isinstance(self.model, ImportModelSpec):
            refs["model.import"] = self.model.import_
        if isinstance(self.loss, ImportRef):
            refs["loss.import"] = self.loss.import_
        if self.metrics is not None:
            refs["metrics.import"] = self.metrics.import_
        if self.data.import_ is not None:
            refs["data.import"] = self.data.import_
        return refs

    def with_import_refs(self, refs: dict[str, str]) -> SweepSpec:
        """The same spec with these fields' references replaced (made absolute, say)."""
        update: dict[str, Any] = {}
        if "model.import" in refs:
            update["model"] = self.model.model_copy(update={"import_": refs["model.import"]})
        if "loss.import" in refs:
            update["loss"] = ImportRef(import_=refs["loss.import"])
        if "metrics.import" in refs:
            update["metrics"] = self.metrics.model_copy(update={"import_": refs["metrics.import"]})
        if "data.import" in refs:
            update["data"] = self.data.model_copy(update={"import_": refs["data.import"]})
        return self.model_copy(update=update)

    @model_validator(mode="after")
    def _refine_without_asha(self) -> SweepSpec:
        if self.search.refine is not None and self.scheduler.name != "none":
            # a round is planned from its lanes' whole runs: ASHA would cut them short
            raise ValueError("search.refine: refinement rounds need scheduler.name: none")
        return self

    @model_validator(mode="after")
    def _mup_optimizers(self) -> SweepSpec:
        """μP's LR rule here is Adam's: refused, by name, for optimizers it is wrong for."""
        if getattr(self.model, "parametrization", "sp") != "mup":
            return self
        for name in self.search.optimizer_names:
            if name not in MUP_OPTIMIZERS:
                why = (
                    "estimates its own step size" if OPTIMIZERS[name].lr_free
                    else "needs another μP rule than Adam's (SGD's LR scales otherwise)"
                    if OPTIMIZERS[name].transform == "sgd"
                    else "does not take its LR linearly (a multiplier on its update is not one on its LR)"
                )  # fmt: skip
                raise ValueError(
                    f"model.parametrization: mup scales the LR by Adam's rule; search.optimizer "
                    f"{name} {why}. With mup use {', '.join(MUP_OPTIMIZERS)}"
                )
        return self

    @model_validator(mode="after")
    def _transfer_fits(self) -> SweepSpec:
        if self.transfer is not None:
            self.transfer.check_against(self)
            if self.transfer.width is not None:  # the budgets see the widest model
                self.model = self.transfer.model_at(self.model, self.transfer.longest)
        return self

    def lane_count(self) -> int:
        seeds = len(self.train.seeds)
        if self.transfer is not None:  # every point once per horizon or batch size
            seeds *= len(self.transfer.trained())
        if self.search.method != "grid":
            return self.search.num_samples * seeds
        schedules = sum(
            _combinations(self.search.schedule_args, SCHEDULES[s].defaults)
            for s in self.search.schedule
        )
        total = 0
        for name in self.search.optimizer_names:
            opt = OPTIMIZERS[name]
            combos = _combinations(self.search.args_for(name), opt.defaults)
            lrs = self.search.lr_range(name).num
            total += (1 if opt.lr_free else lrs) * combos * schedules
        return total * seeds


_TYPE_TAG = re.compile(r"^([a-z_]+\[.*\]|[a-z]+(-[a-z]+)+)$")  # list[float], constrained-int


def _field_path(loc: tuple) -> str:
    """`model.mlp.hiden` -> `model.hiden`, `train.batch_size.constrained-int` -> `train.batch_size`:
    pydantic names union members in the location; a user wants the field."""
    parts = []
    for i, p in enumerate(loc):
        text = str(p)
        if i == 1 and loc[0] == "model" and text in (*MODEL_NAMES, "import"):
            continue
        if i == 1 and loc[0] == "loss" and text == "ImportRef":
            continue
        if text == "OptimizerChoice":  # search.optimizer.0.OptimizerChoice.name
            continue
        if _TYPE_TAG.match(text) or text in {"int", "float", "str", "bool", "list", "dict"}:
            continue
        parts.append(text)
    return ".".join(parts)


_SCALAR_TYPES = frozenset({"int_type", "float_type", "bool_type"})


def _format_errors(err: ValidationError) -> list[str]:
    """One line per field; a union's members (int | "full") are joined with "or"."""
    by_field: dict[str, list[str]] = {}
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "string_type" and isinstance(e.get("input"), dict):
            continue  # a mapping given where a name or a mapping goes: the mapping's errors say it
        if e["type"] == "extra_forbidden":
            msg = "unknown key (misspelled?)"
        elif e["type"] in _SCALAR_TYPES and isinstance(e.get("input"), str):
            text = e["input"] if len(e["input"]) <= 40 else e["input"][:37] + "..."
            msg = f"{msg}, not the string {text!r} (strict: write it without quotes)"
        messages = by_field.setdefault(_field_path(e["loc"]), [])
        if msg not in messages:
            messages.append(msg)
    return [f"{loc}: {' or '.join(m)}" if loc else " or ".join(m) for loc, m in by_field.items()]


def parse_spec(raw: Any) -> SweepSpec:
    """Validate an already-parsed spec (a dict)."""
    if not isinstance(raw, dict):
        raise SpecError([f"spec: expected a mapping at the top level, got {type(raw).__name__}"])
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(_format_errors(err)) from None


def spec_to_json(spec: SweepSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), indent=2)
