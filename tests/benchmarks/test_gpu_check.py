"""benchmarks/gpu_check.py --quick on this CPU, as the GPU machine would run it: with Ray,
MLflow and the service unimportable (that machine has none of them), every process of the check
included. One run; every field of its one JSON line present and sane."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = (
    "ray",
    "mlflow",
    "service",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "pandas",
    "pyarrow",
    "psutil",
)

# Loaded by every Python process started with this folder first on PYTHONPATH (the check's
# children too): importing a blocked package fails as on a machine without it.
SITECUSTOMIZE = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the GPU machine does not have it")
        return None
sys.meta_path.insert(0, Refuse())
"""

MODEL_FIELDS = {"model", "batch", "steps", "eval_every", "params_spec", "flops_per_lane_step",
                "loop", "lanes", "max_population", "phase_s", "error"}  # fmt: skip
ROW_FIELDS = {"lanes", "population_s", "population_cpu_s", "train_s", "compile_s", "width",
              "threads", "diverged_lanes", "memory_stats_peak_bytes", "loop_s",
              "loop_threaded_s", "speedup", "speedup_vs_threaded_loop", "gflops", "loop_gflops",
              "program_bytes", "peak_memory_bytes", "peak_memory_source", "predicted_bytes",
              "fraction_of_fp32_peak", "fraction_of_bf16_peak"}  # fmt: skip
FIT_FIELDS = {"lanes", "width", "predicted_bytes", "budget_bytes", "budget_source", "headroom",
              "model", "probes", "source", "verified"}  # fmt: skip


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_check_runs_without_ray_mlflow_or_the_service(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    probe = subprocess.run([sys.executable, "-c", "import ray"], env=env, capture_output=True,
                           text=True, check=False)  # fmt: skip
    assert probe.returncode != 0 and "blocked" in probe.stderr  # the block is in force
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--quick", "--jobs", "2"],
        env=env, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "one JSON line on stdout, progress on stderr"
    r = json.loads(lines[0])

    assert r["quick"] is True and r["backend"] == "cpu" and r["lane_counts"] == [8, 16, 32]
    assert positive(r["peak_gflops"]["float32"]) and positive(r["peak_gflops"]["bfloat16"])
    assert positive(r["wall_s"]) and r["cores"] >= 1 and r["jax"]
    assert set(r["models"]) == {"mlp", "cnn", "transformer", "resnet"}
    for name, m in r["models"].items():
        assert m["error"] is None, (name, m["error"])
        assert set(m) >= MODEL_FIELDS, (name, MODEL_FIELDS - set(m))
        assert positive(m["flops_per_lane_step"])
        assert m["loop"]["lanes_timed"] == 2 and positive(m["loop"]["per_lane_s"])
        assert positive(m["loop"]["threaded_per_lane_s"]) and m["loop"]["threads"] == r["cores"]
        assert set(m["lanes"]) == {"8", "16", "32"}
        for key, row in m["lanes"].items():
            assert set(row) >= ROW_FIELDS, (name, key, ROW_FIELDS - set(row))
            assert row["lanes"] == int(key) and row["width"] == 8  # quick: width 8 everywhere
            for f in ("population_s", "loop_s", "loop_threaded_s", "speedup", "gflops",
                      "program_bytes", "peak_memory_bytes", "predicted_bytes"):  # fmt: skip
                assert positive(row[f]), (name, key, f, row[f])
            assert row["loop_s"] == m["loop"]["per_lane_s"] * row["lanes"]
            assert row["speedup"] == row["loop_s"] / row["population_s"]
            assert 0 < row["fraction_of_fp32_peak"] < 1.5  # a CPU can't beat its matmul peak
            # A CPU has no memory_stats: the program's own analysis stands in, and the sizing's
            # prediction (fitted at widths 1 and 8) matches it where the count is one slice.
            assert row["peak_memory_source"] == "memory_analysis"
            assert row["memory_stats_peak_bytes"] is None
        one_slice = m["lanes"]["8"]
        assert abs(one_slice["predicted_bytes"] / one_slice["program_bytes"] - 1) < 0.05
        fit = m["max_population"]
        assert set(fit) >= FIT_FIELDS, (name, FIT_FIELDS - set(fit))
        assert fit["source"] == "memory_analysis" and fit["budget_source"] == "--budget-mb"
        assert fit["budget_bytes"] == 16 * 2**20 and fit["lanes"] > 32
        assert fit["predicted_bytes"] <= fit["budget_bytes"] * (1 - fit["headroom"])
        assert fit["verified"]["trained"] is True, fit["verified"]
    # XLA's count for the MLP step against the textbook 6 x batch x MACs (forward 2, backward
    # 4), the optimizer's and the loss's elementwise work on top.
    mlp = r["models"]["mlp"]
    macs = 64 * 16 + 16 * 10
    assert 1.0 <= mlp["flops_per_lane_step"] / (6 * mlp["batch"] * macs) <= 2.0
