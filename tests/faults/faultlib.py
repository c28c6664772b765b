"""Helpers of the fault suite: a small sweep through the real `goldilocks` CLI, snapshots of
its MLflow runs (to show that a fault lost or duplicated nothing), and the figures a fault test
prints and keeps.

Not a conftest.py (see tests/service/svc_testlib.py for why). The service helpers live in
tests/service/svc_testlib.py: `import svc_testlib` after this module is imported.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from conftest import tiny_spec_dict
from typer.testing import CliRunner

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS / "service") not in sys.path:  # svc_testlib, for the service faults
    sys.path.insert(0, str(TESTS / "service"))

KIND = "goldilocks.kind"
ERROR = "goldilocks.error"


def fault_spec(name: str, *, method: str = "grid") -> dict:
    """3 lanes of adam on iris, mlp [8], 20 steps (2 eval points a lane): one compiled program
    for every fault test, so the suite compiles it once. `method="tpe"` makes the same 3 points
    adaptive: one population each, and a plan.json."""
    raw = tiny_spec_dict(
        name=name,
        experiment=f"fault-{name}-{uuid.uuid4().hex[:6]}",
        model={"name": "mlp", "hidden": [8]},
    )
    raw["train"].update(steps=20, eval_every=10)
    raw["search"].update(
        learning_rate={"min": 1e-3, "max": 1.0, "num": 3, "scale": "log"}, optimizer=["adam"]
    )
    if method == "tpe":
        raw["search"].update(method="tpe", num_samples=3)
    return raw


def goldilocks(*args: Any):
    """`goldilocks ARGS` in this process (service.cli.app, the console script's app)."""
    from service.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def output(result) -> str:
    """Everything the command printed, stdout and stderr, on one line."""
    return " ".join(f"{result.stdout}\n{result.stderr}".split())


def run_cli_sweep(tmp: Path, raw: dict, out: Path):
    """`goldilocks run SPEC --out OUT --executor inline --tracking-uri URI`; (the CLI result,
    URI). The store is the session's scratch SQLite (tests/conftest.py): creating MLflow's
    tables costs seconds per new store, and each fault spec has an experiment of its own."""
    spec = tmp / f"{raw['name']}.json"
    spec.write_text(json.dumps(raw))
    uri = os.environ["MLFLOW_TRACKING_URI"]
    result = goldilocks("run", spec, "--out", out, "--executor", "inline", "--tracking-uri", uri)
    return result, uri


def mlflow_runs(uri: str, experiment: str) -> dict[str, dict]:
    """Every run of the experiment (deleted ones included), by id: status, kind, error tag and
    each metric's logged steps (a point logged twice shows as a repeated step)."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment} in {uri}"
    runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    return {
        r.info.run_id: {
            "status": r.info.status,
            "stage": r.info.lifecycle_stage,
            "kind": r.data.tags.get(KIND),
            "error": r.data.tags.get(ERROR),
            "steps": {
                key: sorted(m.step for m in client.get_metric_history(r.info.run_id, key))
                for key in r.data.metrics
            },
        }
        for r in runs
    }


def repeated_steps(runs: dict[str, dict]) -> dict[str, dict[str, list[int]]]:
    """Per run, the metrics with a step logged more than once (empty: nothing duplicated)."""
    found = {}
    for run_id, run in runs.items():
        dups = {k: steps for k, steps in run["steps"].items() if len(steps) != len(set(steps))}
        if dups:
            found[run_id] = dups
    return found


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under the folder, by relative path: to show a refusal wrote nothing."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def keep_figures(path: Path, name: str, figures: dict) -> None:
    """Print a fault test's figures (pytest -s shows them) and write them as JSON."""
    path.write_text(json.dumps(figures, indent=1, sort_keys=True))
    print(f"\n[fault figures] {name}: {json.dumps(figures, sort_keys=True)}\n  -> {path}")
