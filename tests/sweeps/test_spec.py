"""The sweep spec: every bad input is refused with a line naming the field, good ones parse."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import tiny_spec_dict

from sweeps.core.data import load_dataset
from sweeps.settings import get_settings
from sweeps.spec import SpecError, check_against_data, load_spec, parse_spec, parse_spec_text

# A valid spec as YAML text; a case appends one more top-level section to it.
BASE_YAML = """\
name: tiny
data: {name: iris}
model: {name: mlp, hidden: [16]}
loss: cross_entropy
train: {steps: 40, batch_size: 32, eval_every: 10}
"""


def spec_with(path: str, value) -> dict:
    """The tiny spec with one (dotted) field set."""
    spec = tiny_spec_dict()
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node[key]
    node[last] = value
    return spec


def spec_renamed(path: str, new_key: str) -> dict:
    """The tiny spec with one (dotted) key misspelled."""
    spec = tiny_spec_dict()
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node[key]
    node[new_key] = node.pop(last)
    return spec


def spec_errors(source: dict | str | list) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec_text(source) if isinstance(source, str) else parse_spec(source)
    errors = info.value.errors
    assert errors and all(isinstance(line, str) for line in errors)
    for line in errors:  # the exception text shows every line to the user
        assert line in str(info.value)
    return errors


def assert_error(errors: list[str], field: str, *phrases: str) -> None:
    hits = [line for line in errors if line.startswith(field) and all(p in line for p in phrases)]
    assert hits, f"no error line starting with {field!r} containing {phrases}; got {errors}"


BAD_SPECS = [
    # unknown names list the valid choices
    pytest.param(
        spec_with("model", {"name": "resnet50"}),
        "model",
        ["linear", "mlp", "cnn", "transformer", "resnet", "model.import"],
        id="unknown-model",
    ),
    pytest.param(
        spec_with("loss", "hinge"),
        "loss",
        ["unknown loss 'hinge'", "choose one of", "cross_entropy", "mse"],
        id="unknown-loss",
    ),
    pytest.param(
        spec_with("search.optimizer", ["sgd", "adamx"]),
        "search.optimizer",
        ["unknown optimizer 'adamx'", "choose one of", "sgd", "momentum", "adam"],
        id="unknown-optimizer",
    ),
    pytest.param(
        spec_with("search.schedule", ["constant", "cosine_restarts"]),
        "search.schedule",
        ["unknown schedule 'cosine_restarts'", "choose one of", "constant", "warmup_cosine"],
        id="unknown-schedule",
    ),
    pytest.param(
        spec_with("data", {"name": "mnist"}),
        "data.name",
        ["unknown dataset 'mnist'", "choose one of", "digits", "iris"],
        id="unknown-dataset",
    ),
    # numbers
    pytest.param(
        spec_with("search.learning_rate.min", 0.0),
        "search.learning_rate.min",
        ["greater than 0"],
        id="lr-min-zero",
    ),
    pytest.param(
        spec_with("search.learning_rate.min", -1e-3),
        "search.learning_rate.min",
        ["greater than 0"],
        id="lr-min-negative",
    ),
    pytest.param(
        spec_with("search.learning_rate.min", 100.0),  # == max
        "search.learning_rate",
        ["min (100.0)", "smaller than max (100.0)"],
        id="lr-min-equals-max",
    ),
    pytest.param(
        spec_with("search.learning_rate.min", 500.0),
        "search.learning_rate",
        ["min (500.0)", "smaller than max (100.0)"],
        id="lr-min-above-max",
    ),
    pytest.param(
        BASE_YAML + "search: {learning_rate: {min: .nan}}\n",
        "search.learning_rate.min",
        ["finite number"],
        id="yaml-nan",
    ),
    pytest.param(
        BASE_YAML + "search: {learning_rate: {max: .inf}}\n",
        "search.learning_rate.max",
        ["finite number"],
        id="yaml-inf",
    ),
    pytest.param(
        BASE_YAML + "search: {learning_rate: {min: -.inf}}\n",
        "search.learning_rate.min",
        ["finite number"],
        id="yaml-minus-inf",
    ),
    pytest.param(
        BASE_YAML + "early_stopping: {diverge_factor: .inf}\n",
        "early_stopping.diverge_factor",
        ["finite number"],
        id="yaml-inf-diverge-factor",
    ),
    pytest.param(
        BASE_YAML + "search: {optimizer: [momentum], optimizer_args: {momentum: .nan}}\n",
        "search.optimizer_args.momentum",
        ["finite number"],
        id="yaml-nan-optimizer-arg",
    ),
    pytest.param(
        spec_with("search.learning_rate.num", 0),
        "search.learning_rate.num",
        ["greater than 0"],
        id="lr-num-zero",
    ),
    pytest.param(spec_with("train.steps", 0), "train.steps", ["greater than 0"], id="steps-zero"),
    pytest.param(
        spec_with("train.eval_every", 41),
        "train",
        ["eval_every (41)", "larger than steps (40)"],
        id="eval-every-above-steps",
    ),
    pytest.param(
        spec_with("train.batch_size", 0),
        "train.batch_size",
        ["greater than 0"],
        id="batch-size-zero",
    ),
    pytest.param(
        spec_with("train.seeds", []), "train.seeds", ["at least 1 item"], id="seeds-empty"
    ),
    pytest.param(
        spec_with("train.seeds", [0, 1, 0]),
        "train",
        ["seeds must be distinct"],
        id="seeds-duplicate",
    ),
    # misspelled keys
    pytest.param(spec_renamed("train", "trian"), "trian", ["unknown key"], id="typo-top-level"),
    pytest.param(
        spec_renamed("search.learning_rate", "learnig_rate"),
        "search.learnig_rate",
        ["unknown key"],
        id="typo-search-learning-rate",
    ),
    pytest.param(
        spec_renamed("search.learning_rate.max", "maxx"),
        "search.learning_rate.maxx",
        ["unknown key"],
        id="typo-deeply-nested",
    ),
    pytest.param(
        spec_with("model", {"name": "mlp", "hiden": [4]}),
        "model",
        ["hiden", "unknown key"],
        id="typo-model-field",
    ),
    # the shape of the document
    pytest.param(
        BASE_YAML.replace("hidden: [16]}", "hidden: [16]"),  # unclosed flow mapping
        "spec",
        ["malformed YAML", "line 4"],
        id="malformed-yaml",
    ),
    pytest.param(
        "name: tiny\ndata:\n  name: iris\n\tval_fraction: 0.1\n",  # a tab in the indent
        "spec",
        ["malformed YAML", "line 4"],
        id="malformed-yaml-tab",
    ),
    pytest.param(
        "- name: tiny\n- loss: mse\n",
        "spec",
        ["expected a mapping at the top level", "list"],
        id="top-level-list",
    ),
    pytest.param([tiny_spec_dict()], "spec", ["expected a mapping"], id="top-level-list-object"),
    pytest.param("", "spec", ["expected a mapping"], id="empty-document"),
    # names that could escape a folder or break a path
    pytest.param(spec_with("name", "../evil"), "name", ["pattern"], id="name-dotdot-slash"),
    pytest.param(spec_with("name", "my sweep"), "name", ["pattern"], id="name-space"),
    pytest.param(spec_with("name", ".."), "name", ["only dots"], id="name-only-dots"),
    pytest.param(spec_with("name", "x" * 65), "name", ["pattern"], id="name-too-long"),
    # argument names that no optimizer / schedule takes (typos)
    pytest.param(
        spec_with("search", {"optimizer": ["adam"], "optimizer_args": {"momentun": 0.9}}),
        "search.optimizer_args",
        ["unknown optimizer argument 'momentun'", "b1", "momentum", "weight_decay"],
        id="optimizer-arg-typo",
    ),
    pytest.param(
        spec_with("search", {"schedule": ["cosine"], "schedule_args": {"warmup_fractoin": 0.1}}),
        "search.schedule_args",
        ["unknown schedule argument 'warmup_fractoin'", "final_fraction", "warmup_fraction"],
        id="schedule-arg-typo",
    ),
    # data
    pytest.param(
        spec_with("data", {"name": "iris", "val_fraction": 1.0}),
        "data.val_fraction",
        ["less than 1"],
        id="val-fraction-one",
    ),
    pytest.param(
        spec_with("data", {"name": "iris", "val_fraction": -0.1}),
        "data.val_fraction",
        ["greater than or equal to 0"],
        id="val-fraction-negative",
    ),
    pytest.param(
        spec_with("data", {"name": "iris", "path": "train.csv"}),
        "data",
        ["exactly one of", "data.name", "data.path"],
        id="data-name-and-path",
    ),
    pytest.param(
        spec_with("data", {"val_fraction": 0.1}),
        "data",
        ["exactly one of", "data.name", "data.path"],
        id="data-neither-name-nor-path",
    ),
]


@pytest.mark.parametrize(("source", "field", "phrases"), BAD_SPECS)
def test_bad_spec_names_the_field(source, field, phrases):
    assert_error(spec_errors(source), field, *phrases)


def test_every_problem_is_reported_at_once():
    spec = tiny_spec_dict(loss="hinge")
    spec["train"]["steps"] = 0
    spec["search"]["learning_rate"]["min"] = -1.0
    errors = spec_errors(spec)
    assert_error(errors, "loss", "hinge")
    assert_error(errors, "train.steps", "greater than 0")
    assert_error(errors, "search.learning_rate.min", "greater than 0")


# ---------------------------------------------------------------- the lane cap
# A budget of the machine, not a rule of the spec: whether a spec is valid never depends on
# the process environment; `prepare` refuses it under the settings it is given.


def budget_errors(raw: dict, **settings) -> list[str]:
    from sweeps.pipeline import prepare
    from sweeps.settings import Settings

    with pytest.raises(SpecError) as info:
        prepare(
            parse_spec(raw),
            settings=Settings.model_construct(**{**Settings().model_dump(), **settings}),
        )
    return info.value.errors


def test_lane_count_above_cap_is_refused_by_the_budget_not_the_schema(monkeypatch):
    # tiny: 7 learning rates x [sgd, adam] = 14 lanes
    monkeypatch.setenv("GOLDILOCKS_MAX_LANES", "10")
    get_settings.cache_clear()
    try:
        assert parse_spec(tiny_spec_dict()).lane_count() == 14  # the environment is not read
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    errors = budget_errors(tiny_spec_dict(), max_lanes=10)
    assert_error(errors, "search", "14 lanes", "cap of 10", "GOLDILOCKS_MAX_LANES")


def test_random_search_lane_count_above_cap_is_refused():
    spec = tiny_spec_dict()
    spec["search"].update(method="random", num_samples=6)
    spec["train"]["seeds"] = [0, 1]
    assert_error(budget_errors(spec, max_lanes=10), "search", "12 lanes", "cap of 10")


def test_lane_count_at_cap_is_accepted():
    from sweeps.pipeline import prepare
    from sweeps.settings import Settings

    spec = parse_spec(spec_with("search.learning_rate.num", 5))  # 5 x 2 optimizers = 10
    settings = Settings.model_construct(**{**Settings().model_dump(), "max_lanes": 10})
    assert len(prepare(spec, settings=settings).lanes) == 10


# ---------------------------------------------------------------- valid specs

DESIGN_EXAMPLE = """\
name: digits-optimizers          # [A-Za-z0-9._-]{1,64}
experiment: goldilocks           # MLflow experiment name
data:
  name: digits                   # built-in (shipped with scikit-learn, or synthetic), or:
  # path: data/train.csv         # csv / npz / parquet file
  # target: y                    # target column (csv/parquet)
  # task: regression | classification   (inferred when omitted)
  val_fraction: 0.2              # 0 allowed: then validation = training data
  standardize: true
model: {name: mlp, hidden: [128, 128], activation: relu}
loss: cross_entropy              # cross_entropy | bce | mse | huber ...
train: {steps: 500, batch_size: 128, eval_every: 25, seeds: [0]}   # batch_size may be "full"
search:
  method: grid                   # grid | random | tpe
  num_samples: 32                # random / tpe
  learning_rate: {min: 1.0e-5, max: 10.0, num: 25, scale: log}
  optimizer: [sgd, momentum, adam]
  schedule: [constant]
  optimizer_args: {momentum: 0.9}   # a value is fixed, a list is searched
  schedule_args: {warmup_fraction: 0.1}
early_stopping: {diverge_factor: 4.0}
scheduler: {name: none}          # none | asha
resources: {cpus_per_trial: 1, gpus_per_trial: 0, max_concurrent_trials: 2, max_lanes_per_trial: 256}
"""


def test_design_example_parses_with_a_schedule_for_its_schedule_args():
    # DESIGN.md's example with `warmup_cosine` added, so that its schedule_args have an owner.
    text = DESIGN_EXAMPLE.replace("schedule: [constant]", "schedule: [constant, warmup_cosine]")
    spec = parse_spec_text(text)
    assert spec.name == "digits-optimizers"
    assert spec.experiment == "goldilocks"
    assert (spec.data.name, spec.data.path, spec.data.val_fraction) == ("digits", None, 0.2)
    assert spec.data.standardize is True
    assert (spec.model.name, spec.model.hidden, spec.model.activation) == (
        "mlp",
        [128, 128],
        "relu",
    )
    assert spec.loss == "cross_entropy"
    assert (spec.train.steps, spec.train.batch_size, spec.train.eval_every) == (500, 128, 25)
    assert spec.train.seeds == [0]
    assert spec.search.optimizer == ["sgd", "momentum", "adam"]
    assert spec.search.optimizer_args == {"momentum": 0.9}
    assert spec.search.learning_rate.min == 1e-5 and spec.search.learning_rate.max == 10.0
    assert spec.scheduler.name == "none"
    assert spec.resources.max_lanes_per_trial == 256
    # 25 LRs x 3 optimizers x 2 schedules (one fixed argument each: no extra combinations)
    assert spec.lane_count() == 150


def test_design_example_parses_verbatim():
    spec = parse_spec_text(DESIGN_EXAMPLE)
    assert spec.lane_count() == 75
    # warmup_fraction belongs to no chosen schedule: accepted, and reported as unused.
    assert spec.search.unused_args() == ["schedule_args.warmup_fraction"]


def test_batch_size_full_is_accepted():
    spec = parse_spec(spec_with("train.batch_size", "full"))
    assert spec.train.batch_size == "full"
    spec = parse_spec_text(BASE_YAML.replace("batch_size: 32", "batch_size: full"))
    assert spec.train.batch_size == "full"


def test_batch_size_other_word_is_refused():
    assert_error(spec_errors(spec_with("train.batch_size", "all")), "train.batch_size", "'full'")


def test_json_text_is_accepted():
    raw = tiny_spec_dict()
    spec = parse_spec_text(json.dumps(raw, indent=2))
    assert spec == parse_spec(raw)
    assert spec.search.optimizer == ["sgd", "adam"]
    assert spec.lane_count() == 14


def test_load_spec_reads_yaml_file(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(BASE_YAML)
    spec = load_spec(path)
    assert spec.name == "tiny" and spec.model.hidden == [16]


def test_load_spec_missing_file_names_the_path(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert_error(info.value.errors, "spec", "cannot read", "nope.yaml")


def test_yaml_comments_and_block_style_are_accepted():
    text = textwrap.dedent(
        """\
        # a comment
        name: block-style
        data:
          name: wine
        model:
          name: linear
        loss: cross_entropy
        search:
          optimizer:
            - momentum
          optimizer_args:
            momentum: [0.8, 0.9]
        """
    )
    spec = parse_spec_text(text)
    assert spec.search.optimizer_args == {"momentum": [0.8, 0.9]}
    assert spec.lane_count() == 25 * 2


# ---------------------------------------------------------------- checks against the data


@pytest.fixture(scope="module")
def datasets():
    return {
        name: load_dataset(name=name, val_fraction=0.2, seed=0)
        for name in ("iris", "digits", "diabetes")
    }


DATA_PROBLEMS = [
    pytest.param(
        tiny_spec_dict(loss="bce", data={"name": "digits"}),
        "digits",
        "loss",
        ["'bce' needs two classes", "has 10"],
        id="bce-on-ten-classes",
    ),
    pytest.param(
        tiny_spec_dict(loss="mse"),
        "iris",
        "loss",
        ["'mse' is a regression loss", "classification task"],
        id="mse-on-classification",
    ),
    pytest.param(
        tiny_spec_dict(data={"name": "diabetes"}),
        "diabetes",
        "loss",
        ["'cross_entropy' is a classification loss", "regression task"],
        id="cross-entropy-on-regression",
    ),
    pytest.param(
        spec_with("train.batch_size", 1000),
        "iris",
        "train.batch_size",
        ["1000 is larger than the 120 training rows", "'full'"],
        id="batch-larger-than-train-rows",
    ),
    pytest.param(
        tiny_spec_dict(model={"name": "cnn"}),
        "iris",
        "model.name",
        ["cnn needs image-shaped inputs"],
        id="cnn-on-tabular",
    ),
]


@pytest.mark.parametrize(("raw", "dataset", "field", "phrases"), DATA_PROBLEMS)
def test_data_problem_names_the_field(datasets, raw, dataset, field, phrases):
    spec = parse_spec(raw)  # valid on its own
    with pytest.raises(SpecError) as info:
        check_against_data(spec, datasets[dataset])
    assert_error(info.value.errors, field, *phrases)


@pytest.mark.parametrize(
    ("raw", "dataset"),
    [
        pytest.param(tiny_spec_dict(), "iris", id="mlp-iris"),
        pytest.param(spec_with("train.batch_size", "full"), "iris", id="full-batch"),
        pytest.param(spec_with("train.batch_size", 120), "iris", id="batch-equals-rows"),
        pytest.param(
            tiny_spec_dict(model={"name": "cnn"}, data={"name": "digits"}),
            "digits",
            id="cnn-digits",
        ),
        pytest.param(
            tiny_spec_dict(loss="mse", data={"name": "diabetes"}), "diabetes", id="mse-diabetes"
        ),
    ],
)
def test_data_checks_accept_matching_data(datasets, raw, dataset):
    assert check_against_data(parse_spec(raw), datasets[dataset]) is None


# ---------------------------------------------------------------- strict input


DUPLICATE_KEYS = [
    pytest.param(
        BASE_YAML + "search:\n  learning_rate:\n    min: 1.0e-3\n    max: 1.0\n    min: 0.1\n",
        "search.learning_rate: duplicate key 'min' at line 10",
        id="nested",
    ),
    pytest.param(BASE_YAML + "loss: mse\n", "spec: duplicate key 'loss' at line 6", id="top"),
    pytest.param(
        BASE_YAML.replace("hidden: [16]", "hidden: [16], hidden: [8]"),
        "model: duplicate key 'hidden' at line 3",
        id="flow-mapping",
    ),
    pytest.param(
        BASE_YAML + "x: [{a: 1}, {b: 1, b: 2}]\n",
        "x.1: duplicate key 'b' at line 6",
        id="in-a-list",
    ),
]


@pytest.mark.parametrize(("text", "line"), DUPLICATE_KEYS)
def test_duplicate_yaml_key_is_refused_naming_its_path(text, line):
    assert spec_errors(text) == [line]


def test_every_duplicate_key_is_reported():
    text = BASE_YAML + "train: {steps: 1}\nsearch: {seed: 1, seed: 2}\n"
    assert spec_errors(text) == [
        "spec: duplicate key 'train' at line 6",
        "search: duplicate key 'seed' at line 7",
    ]


def test_yaml_merge_key_may_still_be_overridden():
    text = BASE_YAML + (
        "search:\n  learning_rate:\n    <<: {min: 1.0e-3, max: 1.0}\n    max: 2.0\n"
    )
    assert parse_spec_text(text).search.learning_rate.max == 2.0


def test_duplicate_json_key_is_refused_naming_its_path(tmp_path):
    text = json.dumps(tiny_spec_dict()).replace('"min": 0.0001', '"min": 0.0001, "min": 0.1')
    assert '"min": 0.1' in text  # the spec does have the key twice
    assert spec_errors(text) == ["search.learning_rate: duplicate key 'min' at line 1"]
    path = tmp_path / "sweep.json"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)  # read by the JSON parser: its own message, the same path
    assert info.value.errors == ["search.learning_rate: duplicate key 'min'"]


def test_json_file_is_read_as_json(tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(tiny_spec_dict(), indent="\t"))  # tabs: not YAML, fine JSON
    assert load_spec(path) == parse_spec(tiny_spec_dict())
    path.write_text('{"name": "tiny",}')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert_error(info.value.errors, "spec", "malformed JSON at line 1")


STRINGS_FOR_NUMBERS = [
    pytest.param("search.learning_rate.num", "3", "a valid integer", id="lr-num"),
    pytest.param("search.learning_rate.min", "0.001", "a valid number", id="lr-min"),
    pytest.param("train.steps", "500", "a valid integer", id="steps"),
    pytest.param("train.batch_size", "32", "a valid integer", id="batch-size"),
    pytest.param("train.seeds", ["0"], "a valid integer", id="seed"),
    pytest.param("data.standardize", "false", "a valid boolean", id="standardize"),
    pytest.param("model.hidden", ["16"], "a valid integer", id="model-hidden"),
    pytest.param("search.optimizer_args", {"b1": "0.9"}, "a valid number", id="optimizer-arg"),
]


@pytest.mark.parametrize(("path", "value", "phrase"), STRINGS_FOR_NUMBERS)
def test_a_string_is_not_a_number(path, value, phrase):
    raw = spec_with(path, value)
    if path == "search.optimizer_args":
        raw["search"]["optimizer"] = ["adam"]
    assert_error(spec_errors(raw), path, phrase, "not the string", "without quotes")


def test_quoted_number_in_yaml_is_refused():
    text = BASE_YAML.replace("steps: 40", 'steps: "40"')
    assert spec_errors(text) == [
        "train.steps: Input should be a valid integer, not the string '40' "
        "(strict: write it without quotes)"
    ]


def test_ints_fill_float_fields_and_yaml_exponents_are_numbers():
    text = BASE_YAML + "search: {learning_rate: {min: 1e-5, max: 1, num: 3}}\n"
    lr = parse_spec_text(text).search.learning_rate
    assert (lr.min, lr.max) == (1e-5, 1.0)
    assert isinstance(lr.max, float)
    spec = parse_spec(spec_with("early_stopping", {"diverge_factor": 5}))
    assert spec.early_stopping.diverge_factor == 5.0
    for text_value, value in [("1.0e5", 1e5), (".5E-3", 5e-4), ("-2e+2", -200.0)]:
        raw = parse_spec_text(BASE_YAML + f"search: {{optimizer_args: {{b1: {text_value}}}}}\n")
        assert raw.search.optimizer_args == {"b1": value}


def test_http_style_json_still_validates():
    # What the service receives: JSON numbers, ints where floats go.
    raw = json.loads(json.dumps(spec_with("search.learning_rate", {"min": 1, "max": 10})))
    assert parse_spec(raw).search.learning_rate.min == 1.0


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file", id="binary"),
        pytest.param("name: tïny\n".encode("latin-1"), "is not UTF-8 text (byte 7)", id="latin-1"),
    ],
)
def test_binary_or_non_utf8_spec_file_is_refused(tmp_path, data, phrase):
    path = tmp_path / "sweep.yaml"
    path.write_bytes(data)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert_error(info.value.errors, "spec", str(path), phrase)


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "sweep.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(tiny_spec_dict()).encode())
    assert load_spec(path).name == "tiny"
