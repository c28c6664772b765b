"""README.md stays true: its demo table is what the demo prints, and what it cites exists.

The demo table is the block between `<!-- demo-table -->` and `<!-- /demo-table -->`. The fast
test renders the recorded demo report (docs/demo/report.json) through the console's own
renderer (`sweeps.console.print_verdict`) and compares: a change to the renderer or to the
README fails it. The manual test runs the demo itself and compares its printed table with the
README, so a change to the verdict or the trainer that moves the demo's figures fails it too.

To refresh after a deliberate change: run the demo inline (as the manual test does), copy its
report.json to docs/demo/report.json, then `python tests/test_readme.py --write` pastes the
rendered table into README.md.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RECORDED = ROOT / "docs" / "demo" / "report.json"
BLOCK = re.compile(r"<!-- demo-table -->\n```text\n(.*?)```\n<!-- /demo-table -->", re.S)
DEMO_SPEC = "examples/digits.yaml"


def render_verdict(report: dict) -> str:
    """What `goldilocks run` prints for this report outside a terminal (160 columns, no
    colour), trailing spaces dropped."""
    import sweeps.console as console_mod

    out = io.StringIO()
    saved = console_mod.console
    console_mod.console = Console(file=out, width=160, color_system=None, force_terminal=False)
    try:
        console_mod.print_verdict(report)
    finally:
        console_mod.console = saved
    return "".join(line.rstrip() + "\n" for line in out.getvalue().splitlines())


def readme_table(text: str | None = None) -> str:
    match = BLOCK.search(README.read_text() if text is None else text)
    assert match, "README.md has no <!-- demo-table --> ```text ... ``` <!-- /demo-table --> block"
    return match.group(1)


def test_the_readme_demo_table_is_what_the_console_prints_for_the_recorded_demo():
    expected = render_verdict(json.loads(RECORDED.read_text()))
    assert readme_table() == expected, (
        "README.md's demo table differs from the verdict rendered from docs/demo/report.json; "
        "refresh it with `python tests/test_readme.py --write` (see this module's docstring)"
    )


def test_the_recorded_report_is_the_demo_spec():
    report = json.loads(RECORDED.read_text())
    spec = _load_yaml(ROOT / DEMO_SPEC)
    assert report["name"] == spec["name"]
    assert {g["optimizer"] for g in report["groups"]} == set(spec["search"]["optimizer"])
    lanes = spec["search"]["learning_rate"]["num"] * len(spec["search"]["optimizer"])
    assert len(report["lanes"]) == lanes
    # the README quotes the command `make demo` runs
    demo = re.search(
        r"^demo:.*\n\t\$\(BIN\)/(goldilocks run .*)$", (ROOT / "Makefile").read_text(), re.M
    )
    assert demo and DEMO_SPEC in demo.group(1)
    assert f"`{demo.group(1)}`" in README.read_text()


# Relative Markdown links, and backticked repo paths such as `sweeps/console.py` or
# `docs/deploy.md` (a top-level folder of the repo, then a path with a suffix or a slash).
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
TOP = ("sweeps", "service", "models", "tests", "docs", "examples", "benchmarks", "docker")
CODE_PATH = re.compile(r"`((?:" + "|".join(TOP) + r")/[\w./-]*)`")


def cited_paths(text: str, base: str = ".") -> set[str]:
    """Repo-relative paths a Markdown text (in folder `base`) links to or names in backticks."""
    links = {m for m in LINK.findall(text) if "://" not in m and not m.startswith("mailto:")}
    paths = {os.path.normpath(os.path.join(base, link)) for link in links}
    paths |= {p.rstrip("/.") for p in CODE_PATH.findall(text)}
    return paths


@pytest.mark.parametrize(
    "doc",
    ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))],
)
def test_every_path_a_doc_cites_exists(doc):
    path = ROOT / doc
    cited = cited_paths(path.read_text(), str(path.parent.relative_to(ROOT)))
    missing = sorted(p for p in cited if not _exists(p))
    assert not missing, f"{doc} cites paths that are not in the repository: {missing}"


def _exists(path: str) -> bool:
    """A file or folder, or `module.attribute` (`sweeps/pipeline._executor`) of a module."""
    return (ROOT / path).exists() or (ROOT / (path.rsplit(".", 1)[0] + ".py")).exists()


def test_the_path_check_sees_links_and_code_paths():
    assert _exists("sweeps/pipeline._executor") and not _exists("sweeps/tracking_sql.py")

    text = "see [x](nowhere.md#a), [r](../README.md), <https://x.org> and `sweeps/tracking_sql.py`"
    assert cited_paths(text, "docs") == {"docs/nowhere.md", "README.md", "sweeps/tracking_sql.py"}


def test_the_readme_spec_is_a_valid_spec():
    """The README's spec (every field) is read by the real schema."""
    from sweeps.spec import parse_spec_text

    block = re.search(r"## The spec\n.*?```yaml\n(.*?)```", README.read_text(), re.S)
    assert block, "README.md has no ```yaml block under '## The spec'"
    spec = parse_spec_text(block.group(1))
    assert spec.search.optimizer == ["sgd", "momentum", "adam"]
    assert spec.analysis.zone_tolerance == 0.05


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= 260


@pytest.mark.manual
def test_the_demo_prints_the_readme_table(tmp_path):
    """Runs the demo (inline, ~20 s on 2 cores) and compares its printed table with README."""
    env = {k: v for k, v in os.environ.items() if k != "GOLDILOCKS_CPU_LANE_WIDTH"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/mlflow.db"
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "run", DEMO_SPEC, "--out", str(tmp_path / "demo"),
         "--executor", "inline"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    printed = render_verdict(json.loads((tmp_path / "demo" / "report.json").read_text()))
    assert printed in "".join(line.rstrip() + "\n" for line in out.stdout.splitlines())
    assert printed == readme_table()


def _load_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def write_readme_table() -> None:
    table = render_verdict(json.loads(RECORDED.read_text()))
    text = README.read_text()
    readme_table(text)  # the block must exist
    block = f"<!-- demo-table -->\n```text\n{table}```\n<!-- /demo-table -->"
    README.write_text(BLOCK.sub(lambda _: block, text, count=1))


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    write_readme_table()
