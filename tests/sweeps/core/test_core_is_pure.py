"""The numerical core imports neither Ray nor MLflow nor the sweep spec: it runs anywhere JAX
does, and a test of it needs no cluster and no tracking store."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import sweeps.core

ROOT = Path(__file__).resolve().parents[3]
CORE = sorted(f"sweeps.core.{m.name}" for m in pkgutil.iter_modules(sweeps.core.__path__))


def test_every_core_module_imports_without_ray_mlflow_or_specs():
    assert {"sweeps.core.population", "sweeps.core.data", "sweeps.core.lrfind"} <= set(CORE)
    code = (
        "import importlib, json, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "jax" in loaded and "sweeps.core.population" in loaded  # it did import the core
    for banned in ("ray", "mlflow", "sweeps.spec", "sweeps.tracking", "sweeps.exec", "sweeps.plan"):
        assert not any(m == banned or m.startswith(banned + ".") for m in loaded), banned
