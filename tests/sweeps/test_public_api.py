"""The public Python API: every name in `sweeps.__all__` resolves, lazily, and a notebook can
run a sweep and read its report without the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import tiny_spec_dict

import sweeps


def test_every_public_name_resolves():
    for name in sweeps.__all__:
        assert getattr(sweeps, name) is not None, name
    assert set(sweeps.__all__) <= set(dir(sweeps))


def test_import_sweeps_is_light():
    code = "import json, sys, sweeps; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not {"jax", "ray", "mlflow"} & loaded


def test_a_notebook_runs_a_sweep_and_reads_its_report(tmp_path):
    raw = tiny_spec_dict(name="notebook")
    raw["train"].update(steps=20, eval_every=10)
    raw["search"]["learning_rate"] = {"min": 1e-3, "max": 1.0, "num": 3}
    spec = sweeps.parse_spec(raw)
    report = sweeps.run_sweep(sweeps.prepare(spec), tmp_path, executor="inline", track=False)
    assert sweeps.read_report(tmp_path) == json.loads(json.dumps(report))
    assert len(report["lanes"]) == 6 and {g["optimizer"] for g in report["groups"]} == {
        "sgd",
        "adam",
    }
