"""The sweep spec: pydantic models for everything a user writes, and clear errors for bad input.

`load_spec` turns YAML/JSON text or a file into a `SweepSpec`, or raises `SpecError` whose
lines each name the offending field ("search.learning_rate.min: must be > 0"). Checks that need
the data (batch size vs rows, loss vs task) live in `check_against_data`.

Input is read strictly: a key given twice is an error (YAML and JSON parsers would keep the last
one silently), a quoted "3" is a string, not a number (pydantic's strict mode; an int is still
a float), and `1e-5` is a number in YAML as in JSON (YAML 1.2; PyYAML's 1.1 reads a string).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
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
from models.specs import MODEL_NAMES, ImportModelSpec, ModelSpec, check_import_ref, ref_name
from sweeps.core.args import searched_args
from sweeps.core.data import BUILTIN_DATASETS, TEXT_DATASETS
from sweeps.core.losses import LOSS_NAMES, LOSSES
from sweeps.core.optimizers import OPTIMIZER_NAMES, OPTIMIZERS
from sweeps.core.schedules import SCHEDULE_NAMES, SCHEDULES
from sweeps.errors import SpecError
from sweeps.settings import get_settings

if TYPE_CHECKING:
    from sweeps.core.data import Dataset


class Strict(BaseModel):
    # strict: "500" is not a number, "true" not a boolean (an int still fills a float field).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _choose(kind: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"unknown {kind} '{value}'; choose one of: {', '.join(valid)}")
    return value


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
    optimizer: list[str] = Field(default_factory=lambda: ["adam"], min_length=1)
    schedule: list[str] = Field(default_factory=lambda: ["constant"], min_length=1)
    optimizer_args: dict[str, ArgValue] = Field(default_factory=dict)
    schedule_args: dict[str, ArgValue] = Field(default_factory=dict)
    refine: RefineSpec | None = None  # absent: the grid is the answer
    prune: PruneSpec | None = None  # absent: every lane trains every step

    @model_validator(mode="after")
    def _refine_needs_a_grid(self) -> SearchSpec:
        if self.refine is not None and self.method != "grid":
            raise ValueError("refine: refinement rounds refine a grid; set method: grid")
        if self.prune is not None:  # the shape is checked above; training ignores it so far
            raise ValueError(
                "prune: pruning inside a population is not available yet (docs/precision.md); "
                "remove search.prune"
            )
        return self

    @field_validator("optimizer")
    @classmethod
    def _known_optimizers(cls, v: list[str]) -> list[str]:
        return _unique([_choose("optimizer", name, OPTIMIZER_NAMES) for name in v], "optimizer")

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
        opt_keys = {k for o in self.optimizer for k in OPTIMIZERS[o].defaults}
        sched_keys = {k for s in self.schedule for k in SCHEDULES[s].defaults}
        return [f"optimizer_args.{k}" for k in self.optimizer_args if k not in opt_keys] + [
            f"schedule_args.{k}" for k in self.schedule_args if k not in sched_keys
        ]


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
    def _lane_cap(self) -> SweepSpec:
        cap = get_settings().max_lanes
        if self.lane_count() > cap:
            raise ValueError(
                f"search: this sweep has {self.lane_count()} lanes, above the cap of {cap} "
                "(GOLDILOCKS_MAX_LANES); narrow the grid or use fewer seeds"
            )
        return self

    def lane_count(self) -> int:
        seeds = len(self.train.seeds)
        if self.search.method != "grid":
            return self.search.num_samples * seeds
        lrs = self.search.learning_rate.num
        schedules = sum(
            _combinations(self.search.schedule_args, SCHEDULES[s].defaults)
            for s in self.search.schedule
        )
        total = 0
        for name in self.search.optimizer:
            opt = OPTIMIZERS[name]
            combos = _combinations(self.search.optimizer_args, opt.defaults)
            total += (1 if opt.lr_free else lrs) * combos * schedules
        return total * seeds


def _combinations(args: dict[str, Any], defaults: dict[str, float]) -> int:
    """How many argument combinations a grid makes for one optimizer or schedule."""
    return math.prod(len(v) for v in searched_args(args, defaults).values())


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


# ---------------------------------------------------------------- text -> Python data, strictly

_MERGE_TAG = "tag:yaml.org,2002:merge"
# YAML 1.2's floats with an exponent that YAML 1.1 reads as strings: 1e-5, 1.0e5, .5E3.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)[eE][-+]?[0-9]+$")


class _DuplicateKeys(yaml.YAMLError):
    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, strict: every key given twice in a mapping is reported with the
    path of that mapping ("search.learning_rate: duplicate key 'min' at line 7"), where PyYAML
    would keep the last value silently. Merge keys (`<<: *base`) may still be overridden."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._paths: dict[int, str] = {}  # id(node) -> its dotted path, set by its parent
        self._duplicates: list[str] = []

    def construct_document(self, node: yaml.Node) -> Any:
        data = super().construct_document(node)
        if self._duplicates:
            raise _DuplicateKeys(self._duplicates)
        return data

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            path = self._paths.get(id(node), "")
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class refuses it
                    continue
                if duplicate:
                    line = key_node.start_mark.line + 1
                    self._duplicates.append(
                        f"{path or 'spec'}: duplicate key {key!r} at line {line}"
                    )
                self._paths.setdefault(id(value_node), _join(path, key))
        return super().construct_mapping(node, deep=deep)

    def construct_sequence(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.SequenceNode):
            path = self._paths.get(id(node), "")
            for i, child in enumerate(node.value):
                self._paths.setdefault(id(child), _join(path, i))
        return super().construct_sequence(node, deep=deep)


SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def load_yaml(text: str, loader: type[SpecLoader] = SpecLoader) -> Any:
    """YAML text as Python data (strictly: see SpecLoader), else SpecError."""
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKeys as err:
        raise SpecError(err.lines) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError([f"spec: malformed YAML{where}: {getattr(err, 'problem', err)}"]) from None


class _Object(dict):
    """A JSON object that had some keys twice (the last value kept, as json does)."""

    duplicates: list[str]


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    duplicates = []
    for key, value in pairs:
        if key in obj:
            duplicates.append(key)
        obj[key] = value
    if not duplicates:
        return obj
    marked = _Object(obj)
    marked.duplicates = duplicates
    return marked


def load_json(text: str) -> Any:
    """JSON text as Python data, refusing keys given twice (naming their path), else SpecError."""
    try:
        data = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as err:
        raise SpecError(
            [f"spec: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"]
        ) from None
    errors = []
    todo: list[tuple[str, Any]] = [("", data)]  # a loop, not recursion: JSON nests deeply
    while todo:
        path, node = todo.pop()
        if isinstance(node, _Object):
            errors += [f"{path or 'spec'}: duplicate key {key!r}" for key in node.duplicates]
        if isinstance(node, dict):
            todo += [(_join(path, key), child) for key, child in node.items()]
        elif isinstance(node, list):
            todo += [(_join(path, i), child) for i, child in enumerate(node)]
    if errors:
        raise SpecError(sorted(errors))
    return data


def parse_spec_text(text: str, *, json_text: bool = False) -> SweepSpec:
    """Validate YAML or JSON text (JSON is YAML; `json_text` reads it with the JSON parser)."""
    return parse_spec(load_json(text) if json_text else load_yaml(text))


def read_spec_text(path: Path) -> str:
    """A spec file's text, else SpecError: unreadable, binary, or not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SpecError([f"spec: cannot read {path}: {err.strerror}"]) from None
    if b"\x00" in data:
        raise SpecError([f"spec: {path} is a binary file, not YAML or JSON text"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpecError(
            [f"spec: {path} is not UTF-8 text (byte {err.start}); save the spec as UTF-8"]
        ) from None


def load_spec(path: str | Path) -> SweepSpec:
    """A spec file: `.json` read as JSON, anything else as YAML."""
    path = Path(path)
    return parse_spec_text(read_spec_text(path), json_text=path.suffix.lower() == ".json")


def model_for(spec: SweepSpec, data: Dataset):
    """(the loss, the model's pure functions) for this spec on this data. ValueError names
    the field at fault (an import that fails, a constructor that refuses its arguments)."""
    from models import make_model  # JAX: the data is loaded, a sweep is about to run
    from sweeps.core.losses import get_loss
    from sweeps.core.population import data_shape

    loss = get_loss(
        spec.loss_key,
        task=data.task,
        metrics=spec.metrics.import_ if spec.metrics else None,
        metric=spec.metric_name,
        higher_is_better=spec.higher_is_better,
    )
    return loss, make_model(spec.model, data_shape(data, loss))


def check_against_data(spec: SweepSpec, data: Dataset) -> None:
    """The checks that need the loaded data: loss vs task, batch size vs rows, and the model on
    a sample batch (built, called, its output fed to the loss and the metrics: abstractly,
    shapes only, so a big model costs no FLOPs)."""
    errors = []
    builtin = LOSSES.get(spec.loss_key)
    if builtin is not None and builtin.task != data.task:
        errors.append(
            f"loss: '{spec.loss_name}' is a {builtin.task} loss but data '{data.name}' is a "
            f"{data.task} task"
        )
    elif builtin is not None and builtin.binary_only and data.num_classes != 2:
        errors.append(f"loss: 'bce' needs two classes; data '{data.name}' has {data.num_classes}")
    if spec.train.batch_size != "full" and spec.train.batch_size > data.n_train:
        errors.append(
            f"train.batch_size: {spec.train.batch_size} is larger than the {data.n_train} "
            "training rows (use a smaller batch or 'full')"
        )
    if not errors:  # the model on a sample batch: only meaningful when loss and task agree
        try:
            loss, fns = model_for(spec, data)
            errors += _sample_batch_errors(spec, data, loss, fns)
        except (ValueError, TypeError) as err:  # e.g. a cnn on tabular data, a bad import
            message = str(err)
            errors.append(message if ":" in message.split(" ")[0] else f"model: {message}")
    if errors:
        raise SpecError(errors)


def _sample_batch_errors(spec: SweepSpec, data: Dataset, loss, fns) -> list[str]:
    """Trace the model, the loss and the metrics on two training examples (shapes only)."""
    import jax

    x, y = data.x_train[:2], data.y_train[:2]
    label = fns.name
    try:
        variables = jax.eval_shape(fns.init, jax.random.key(0))
        pred, _ = jax.eval_shape(lambda v, x: fns.apply(*v, x, True), variables, x)
    except Exception as err:  # the user's code: anything may come out of it
        return [f"model: {label} fails on a batch of shape {tuple(x.shape)} {x.dtype}: "
                f"{type(err).__name__}: {_short(err)}"]  # fmt: skip
    where = "loss" if isinstance(spec.loss, str) else "loss.import"
    if isinstance(spec.loss, str):
        want = loss.expected_shape(tuple(y.shape), data.num_classes)
        if tuple(pred.shape) != want:
            return [f"model: {label} returns predictions of shape {tuple(pred.shape)} for a "
                    f"batch of 2, but '{spec.loss_name}' on these targets {tuple(y.shape)} "
                    f"takes {want}"]  # fmt: skip
    try:
        value = jax.eval_shape(loss.fn, pred, y)
    except Exception as err:
        return [f"{where}: fails on predictions {tuple(pred.shape)} and targets "
                f"{tuple(y.shape)}: {type(err).__name__}: {_short(err)}"]  # fmt: skip
    if getattr(value, "shape", None) != ():
        return [f"{where}: must return a scalar (the batch's mean loss), got shape "
                f"{getattr(value, 'shape', type(value).__name__)}"]  # fmt: skip
    try:
        metrics = jax.eval_shape(loss.metrics, pred, y)
    except Exception as err:
        return [f"metrics.import: fails: {type(err).__name__}: {_short(err)}"]
    if not isinstance(metrics, dict) or spec.metric_name not in metrics:
        names = ", ".join(metrics) if isinstance(metrics, dict) else type(metrics).__name__
        return [f"metrics.metric: '{spec.metric_name}' is not among the metrics returned "
                f"({names})"]  # fmt: skip
    bad = [k for k, v in metrics.items() if getattr(v, "shape", None) != ()]
    if bad:
        return [f"metrics.import: every metric must be a scalar; not: {', '.join(bad)}"]
    return []


def _short(err: Exception, limit: int = 300) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def spec_to_json(spec: SweepSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), indent=2)
