"""Goldilocks' sweep library: the same sweeps as the CLI, from Python (a notebook, a script).

    import sweeps
    spec = sweeps.load_spec("examples/digits.yaml")
    report = sweeps.run_sweep(sweeps.prepare(spec), "runs/nb", executor="inline")

    # or your own model, loss and data, as objects:
    report = sweeps.run_sweep({"name": "mine"}, model=MyNet, loss=my_loss,
                              data={"x": x, "y": y}, executor="inline")
    report.table  # the verdict

Names load on first use, so `import sweeps` (and the CLI's light commands) never pays for
JAX, Ray or MLflow before they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_EXPORTS = {
    # the spec
    "SweepSpec": "sweeps.spec",
    "load_spec": "sweeps.spec",
    "parse_spec": "sweeps.spec",
    "SpecError": "sweeps.errors",
    "FolderError": "sweeps.errors",
    "SweepFailed": "sweeps.errors",
    "SweepInterrupted": "sweeps.errors",
    # a sweep, end to end
    "Prepared": "sweeps.pipeline",
    "prepare": "sweeps.pipeline",
    "run_sweep": "sweeps.api",
    "Report": "sweeps.api",
    "load_for_resume": "sweeps.pipeline",
    "read_report": "sweeps.verdict.report",
    "lr_find": "sweeps.lrfind",
    # its parts
    "Planner": "sweeps.plan.planner",
    "train_inline": "sweeps.exec.inline",
    "Structure": "sweeps.core.population",
    "make_hyperparams": "sweeps.core.population",
    "train_population": "sweeps.core.population",
    "load_dataset": "sweeps.core.data",
    "analyze": "sweeps.verdict.analysis",
    "classify_lane": "sweeps.verdict.analysis",
}

__all__ = [
    "FolderError",
    "Planner",
    "Prepared",
    "Report",
    "SpecError",
    "Structure",
    "SweepFailed",
    "SweepInterrupted",
    "SweepSpec",
    "analyze",
    "classify_lane",
    "load_dataset",
    "load_for_resume",
    "load_spec",
    "lr_find",
    "make_hyperparams",
    "parse_spec",
    "prepare",
    "read_report",
    "run_sweep",
    "train_inline",
    "train_population",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sweeps' has no attribute '{name}'")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from sweeps.api import Report, run_sweep
    from sweeps.core.data import load_dataset
    from sweeps.core.population import train_population
    from sweeps.core.program import Structure, make_hyperparams
    from sweeps.errors import FolderError, SpecError, SweepFailed, SweepInterrupted
    from sweeps.exec.inline import train_inline
    from sweeps.lrfind import lr_find
    from sweeps.pipeline import Prepared, load_for_resume, prepare
    from sweeps.plan.planner import Planner
    from sweeps.spec import SweepSpec, load_spec, parse_spec
    from sweeps.verdict.analysis import analyze, classify_lane
    from sweeps.verdict.report import read_report
