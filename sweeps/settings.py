"""Settings read from the environment once (GOLDILOCKS_* variables).

The only place sweeps/ reads GOLDILOCKS_* variables; Ray trial workers get the ones that
matter to them through their runtime environment (sweeps/exec/raytune/cluster.py)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GOLDILOCKS_", extra="ignore")

    max_lanes: int = 4096  # refuse sweeps with more lanes than this
    # Budgets (sweeps/budget.py), checked before anything is created:
    max_steps: int = 10_000_000  # train.steps
    max_lane_steps: int = 2_000_000_000  # lanes x steps of one sweep (~hours on a CPU)
    # Memory one trial may use; unset: this machine's RAM shared by the concurrent CPU trials
    # (GPU trials are not estimated unless this is set: the driver cannot see their devices).
    trial_memory_bytes: int | None = None
    # Lanes trained side by side in one compiled step on a CPU: set, that width; unset,
    # measured per structure on this machine by the driver before its trials start
    # (sweeps/core/lane_width.py), else (tuning off, or a cluster's other hosts) 8 for dense
    # models and 1 for the rest. Wider populations are split into sequential slices of this
    # width, all served by one compile.
    cpu_lane_width: int | None = None
    tune_lane_width: bool = True
    # ... measured only where a structure's populations train at least this many lane-steps
    # (a few compiles and seconds of timing must pay for themselves: sweeps/core/lane_policy.py)
    lane_width_min_lane_steps: int = 500_000
    # Slices of a population trained at once on a CPU, each by its own thread (one small XLA
    # program keeps about one core busy): unset, the cores this process may run on; a Ray
    # trial gets its whole CPUs (sweeps/exec/raytune/cluster.py).
    cpu_threads: int | None = Field(None, ge=1)
    gpu_lane_width: int = 1024
    # Compile the Ray trials' programs in the driver while Ray starts (sweeps/exec/precompile.py).
    precompile: bool = True
    # The persistent XLA compile cache shared by the driver and the Ray trials of this host.
    compile_cache: Path = Path.home() / ".cache" / "goldilocks" / "jax"
    # Where `goldilocks ray up` notes the local Ray head it keeps running between commands.
    state_dir: Path = Path.home() / ".cache" / "goldilocks"
    # The Ray cluster joined (RAY_ADDRESS) runs on this machine only (the service's own Ray):
    # its trials can load the programs the driver compiled ahead (sweeps/exec/precompile.py).
    ray_same_host: bool = False
    # A sweep trained in one Ray trial on this host has the Ray's warm trainer train it: JAX
    # imported and programs compiled once per Ray, not per sweep (sweeps/exec/raytune/warm.py).
    warm_trainer: bool = True
    # where the service keeps uploaded datasets (POST /datasets), one folder per id
    datasets_dir: Path | None = None
    # A Ray trial checkpoints its population at an eval point at most this often.
    checkpoint_every_s: float = 20.0
    # "file.py:fn" or "package.module:fn", called fn(population_id, step) in the trial at each
    # eval point (the fault tests kill a trial with it); unset: nothing.
    trial_hook: str | None = None
    # Where an MLflow UI serves the tracking store (e.g. http://127.0.0.1:5000): the printed
    # links point there. Unset: a tracking server's own address, or for a database the
    # `mlflow ui` command to start one (sweeps/tracking/uri.py). The service reads it too.
    mlflow_ui_url: str | None = None

    def lane_policy(self):
        """The lane-width settings the driver decides widths with (sweeps/core/lane_policy.py)."""
        from sweeps.core.lane_width import LanePolicy

        return LanePolicy(
            cpu_width=self.cpu_lane_width,
            gpu_width=self.gpu_lane_width,
            tune=self.tune_lane_width,
            threads=self.cpu_threads,
            cache_dir=self.compile_cache,
            min_lane_steps=self.lane_width_min_lane_steps,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
