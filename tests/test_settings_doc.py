"""docs/settings.md lists every GOLDILOCKS_* variable the code reads or names, and only those."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import ServiceSettings
from sweeps.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"GOLDILOCKS_[A-Z0-9_]*[A-Z0-9]")


def _in_code() -> set[str]:
    names: set[str] = set()
    for folder in ("sweeps", "service", "models", "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(NAME.findall(path.read_text()))
    # the settings classes' fields are read by their prefix, so their names are nowhere literal
    for cls in (Settings, ServiceSettings):
        for name, field in cls.model_fields.items():
            if field.exclude:  # ServiceSettings.sweep: the other class, not a variable
                continue
            names.add(f"GOLDILOCKS_{name.upper()}")
    return names


def test_every_goldilocks_variable_is_documented_and_nothing_else():
    documented = set(NAME.findall((ROOT / "docs" / "settings.md").read_text()))
    code = _in_code()
    assert not code - documented, f"undocumented in docs/settings.md: {sorted(code - documented)}"
    assert not documented - code, f"documented but unused: {sorted(documented - code)}"


def test_no_goldilocks_variable_is_read_below_the_entry_points():
    """Only the settings modules and the entry points read the environment for our names."""
    allowed = {"sweeps/settings.py", "service/settings.py", "service/driver.py",
               "service/client.py", "service/migrations/env.py"}  # fmt: skip
    readers = []
    for folder in ("sweeps", "service", "models"):
        for path in (ROOT / folder).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            text = path.read_text()
            if rel not in allowed and re.search(r"environ(\.get)?[\[(]\s*\"GOLDILOCKS_", text):
                readers.append(rel)
    assert readers == []
    core = [*(ROOT / "sweeps" / "core").rglob("*.py"), *(ROOT / "sweeps" / "spec").rglob("*.py")]
    for path in core:  # the pure core and the spec schema read no settings at all
        text = path.read_text()
        assert "get_settings" not in text and "os.environ" not in text, path
