"""A real multi-node Ray cluster on loopback for tests: `ray start --head` plus worker nodes.

Ray (2.5x) authenticates nodes and drivers with a shared token, as a real cluster does:
`cluster_env` is the environment every process that joins must carry.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from testlib import free_port

RAY = str(Path(sys.executable).parent / "ray")
ROOT = Path(__file__).resolve().parents[1]


def base_env(**extra: str) -> dict[str, str]:
    """The test process's environment, minus any RAY_ADDRESS, with the project importable."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


@contextlib.contextmanager
def ray_cluster(worker_cpus: list[int], head_cpus: int = 1) -> Iterator[tuple[str, dict]]:
    """Yields (address, cluster_env); `ray stop --force` at the end stops every node."""
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env = base_env(**auth)
    address = f"127.0.0.1:{free_port()}"
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    try:
        subprocess.run(
            [RAY, "start", "--head", f"--port={address.split(':')[1]}", f"--num-cpus={head_cpus}",
             "--include-dashboard=false", '--resources={"head_node": 1}', *common],
            check=True, env=env, capture_output=True, timeout=120,
        )  # fmt: skip
        for cpus in worker_cpus:
            subprocess.run(
                [RAY, "start", f"--address={address}", f"--num-cpus={cpus}",
                 '--resources={"worker_node": 1}', *common],
                check=True, env=env, capture_output=True, timeout=120,
            )  # fmt: skip
        yield address, auth
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def alive_nodes(address: str, auth: dict) -> set[str]:
    """Node ids of the cluster, asked from a separate driver process."""
    code = (
        f"import ray, json; ray.init(address={address!r}, log_to_driver=False);"
        "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=base_env(**auth), capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    return set(json.loads(out.stdout.strip().splitlines()[-1]))
