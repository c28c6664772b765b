"""The sweep spec: pydantic models for everything a user writes, and clear errors for bad input.

`load_spec` turns YAML/JSON text or a file into a `SweepSpec`, or raises `SpecError` whose
lines each name the offending field ("search.learning_rate.min: must be > 0"). Checks that need
the data (batch size vs rows, loss vs task) live in `check_against_data`.

Input is read strictly: a key given twice is an error (YAML and JSON parsers would keep the last
one silently), a quoted "3" is a string, not a number (pydantic's strict mode; an int is still
a float), and `1e-5` is a number in YAML as in JSON (YAML 1.2; PyYAML's 1.1 reads a string).

The package: `base.py` (strict fields), `search.py` (the search section), `schema.py` (the
whole spec and `parse_spec`), `text.py` (strict YAML/JSON reading, `load_spec`), `checks.py`
(the checks that need the data).
"""

from sweeps.errors import SpecError
from sweeps.spec.checks import check_against_data, model_for
from sweeps.spec.schema import ImportRef, SweepSpec, parse_spec, spec_to_json
from sweeps.spec.search import LearningRateRange, OptimizerChoice, SearchSpec
from sweeps.spec.text import (
    SpecLoader,
    load_json,
    load_spec,
    load_yaml,
    parse_spec_text,
    read_spec_text,
)

__all__ = [
    "ImportRef",
    "LearningRateRange",
    "OptimizerChoice",
    "SearchSpec",
    "SpecError",
    "SpecLoader",
    "SweepSpec",
    "check_against_data",
    "load_json",
    "load_spec",
    "load_yaml",
    "model_for",
    "parse_spec",
    "parse_spec_text",
    "read_spec_text",
    "spec_to_json",
]
