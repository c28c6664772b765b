"""Spec text -> Python data, strictly: a key given twice is an error, `1e-5` is a number in
YAML as in JSON, and a file that is not UTF-8 text is refused by name."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

# Light imports only (no JAX): the registries' names and defaults load without it, so a spec
# is validated, and a typo answered, in a fraction of a second (tests/sweeps/test_spec_light.py).
from sweeps.errors import SpecError

if TYPE_CHECKING:
    pass


from sweeps.spec.schema import SweepSpec, parse_spec

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
