"""A spec is read and validated without JAX: `goldilocks validate` answers a typo in about a
second, not after the seconds JAX, optax and Flax take to import. Each check runs in a fresh
interpreter, since the test process has long imported them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_spec_dict

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("jax", "jaxlib", "optax", "flax", "pandas", "sklearn", "ray", "mlflow")

# Runs `goldilocks ARGS...` in-process (the module the console script runs), then reports its
# exit code and which heavy packages it imported.
CLI = (
    f"HEAVY = {set(HEAVY)!r}\n"
    + """\
import json, runpy, sys
sys.argv = ["goldilocks", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("service.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": sorted({m.split(".")[0] for m in sys.modules} & HEAVY)}))
"""
)


def run_cli(*args: str) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _typo(raw: dict) -> None:
    raw["search"]["learnig_rate"] = raw["search"].pop("learning_rate")


def _quoted(raw: dict) -> None:
    raw["train"]["steps"] = "40"


def _unknown_optimizer(raw: dict) -> None:
    raw["search"]["optimizer"] = ["adamx"]


def _unknown_schedule_arg(raw: dict) -> None:
    raw["search"]["schedule_args"] = {"warmup_fractoin": 0.1}


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        pytest.param(_typo, "search.learnig_rate: unknown key (misspelled?)", id="typo"),
        pytest.param(_quoted, "train.steps: Input should be a valid integer", id="quoted"),
        pytest.param(_unknown_optimizer, "unknown optimizer 'adamx'", id="unknown-optimizer"),
        pytest.param(_unknown_schedule_arg, "'warmup_fractoin'", id="unknown-schedule-arg"),
    ],
)
def test_validate_answers_a_bad_spec_without_importing_jax(tmp_path, spoil, message):
    raw = tiny_spec_dict()
    spoil(raw)
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(raw))
    result, stderr = run_cli("validate", str(spec))
    assert result["code"] == 2, stderr
    assert message in stderr
    assert result["heavy"] == [], f"imported {result['heavy']} to refuse a bad spec"


def test_validate_of_a_good_spec_does_import_jax(tmp_path):
    # The other side of the check above: loading data and planning lanes needs JAX.
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec_dict()))
    result, stderr = run_cli("validate", str(spec))
    assert result["code"] == 0, stderr
    assert "jax" in result["heavy"]


def test_a_valid_spec_parses_and_counts_its_lanes_without_jax():
    code = (
        "import json, sys\n"
        "from sweeps.spec import parse_spec\n"
        f"spec = parse_spec({tiny_spec_dict()!r})\n"
        "print(json.dumps([spec.lane_count(), sorted(set(m.split('.')[0] for m in sys.modules)"
        f" & {set(HEAVY)!r})]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
    )  # fmt: skip
    lanes, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert lanes == 14 and heavy == []


def test_the_lazy_registries_resolve_to_the_real_functions():
    import optax

    from sweeps.core.optimizers import OPTIMIZERS
    from sweeps.core.schedules import SCHEDULES

    assert OPTIMIZERS["adam"].factory is optax.adam
    assert OPTIMIZERS["prodigy"].factory is optax.contrib.prodigy
    assert float(SCHEDULES["cosine"].fn(5.0, 10, 2.0, {"final_fraction": 0.0})) == pytest.approx(
        1.0
    )
