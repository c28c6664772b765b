"""What the service costs over running the sweep yourself: a warm `goldilocks serve` against
`goldilocks run --executor inline` of the same spec, in the same run.

The sweep is benchmarks/vs_naive_ray.py's (digits MLP, 64 Adam LRs, 500 steps; `--quick`:
8 LRs, 100 steps). It is submitted twice to one running service: the first submission pays
for the service's Ray start, the first compiles and the lane-width measurement
(`service_cold_s`), the second is the warm figure (`service_s`). Both are measured from the POST to the sweep's `succeeded`, as a
client sees them. `inline_s` is the wall time of `goldilocks run --executor inline` in a
fresh process (its imports, compiles and MLflow logging included). Target:
`overhead` = service_s / inline_s <= 1.15.

    python benchmarks/service_overhead.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from vs_naive_ray import FULL_LANES, FULL_STEPS, spec_dict  # noqa: E402

TARGET_OVERHEAD = 1.15


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        PYTHONPATH=str(ROOT),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db",
        GOLDILOCKS_DATA_DIR=str(tmp / "service"),
        GOLDILOCKS_EXECUTOR="ray",
        RAY_USAGE_STATS_ENABLED="0",
    )
    return env


def wait(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}")


def run_service(spec: dict, tmp: Path) -> tuple[float, float]:
    port = free_port()
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env_for(tmp), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=(tmp / "serve.log").open("wb"))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as api:

            def up():
                try:
                    return api.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    return False

            wait(up, 120, "the service to start")
            times = []
            for attempt in range(2):
                raw = {**spec, "name": f"overhead-{attempt}"}
                t0 = time.perf_counter()
                sweep_id = api.post("/sweeps", json=raw).raise_for_status().json()["id"]

                def ended(sweep_id=sweep_id):
                    s = api.get(f"/sweeps/{sweep_id}").json()
                    return s if s["status"] in ("succeeded", "failed", "cancelled") else None

                done = wait(ended, 1800, f"sweep {sweep_id}", every=0.1)
                if done["status"] != "succeeded":
                    raise RuntimeError(f"the service's sweep ended {done['status']}: {done}")
                times.append(time.perf_counter() - t0)
            return times[0], times[1]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)


def run_inline(spec: dict, tmp: Path) -> float:
    path = tmp / "spec.json"
    path.write_text(json.dumps({**spec, "name": "overhead-inline"}))
    cmd = [sys.executable, "-m", "service.cli", "run", str(path), "--out", str(tmp / "inline"),
           "--executor", "inline"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env_for(tmp), check=True, capture_output=True, timeout=1800)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 LRs, 100 steps")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args()
    lanes, steps = (8, 100) if args.quick else (FULL_LANES, FULL_STEPS)
    spec = spec_dict(lanes, steps)
    with tempfile.TemporaryDirectory(prefix="goldilocks-overhead-") as folder:
        tmp = Path(folder)
        # The service first: its cold sweep pays the once-per-machine costs (the lane width
        # measured, the persistent compile cache filled) that the warm sweep and inline then
        # share, so the two compared figures start from the same machine state.
        cold_s, warm_s = run_service(spec, tmp)
        inline_s = run_inline(spec, tmp)
    result = {
        "benchmark": "service_overhead",
        "lanes": lanes,
        "steps": steps,
        "service_cold_s": round(cold_s, 2),
        "service_s": round(warm_s, 2),
        "inline_s": round(inline_s, 2),
        "overhead": round(warm_s / inline_s, 3),
        "target_overhead": TARGET_OVERHEAD,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"service (cold) {cold_s:7.1f} s\nservice (warm) {warm_s:7.1f} s\n"
              f"inline         {inline_s:7.1f} s\noverhead       {warm_s / inline_s:7.2f}x "
              f"(target <= {TARGET_OVERHEAD})")  # fmt: skip


if __name__ == "__main__":
    main()
