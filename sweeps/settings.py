"""Settings read from the environment once (GOLDILOCKS_* variables)."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GOLDILOCKS_", extra="ignore")

    max_lanes: int = 4096  # refuse sweeps with more lanes than this
    # Lanes trained side by side in one compiled step on a CPU. Measured on 2 cores: a
    # population matches a hand-written loop up to ~64 lanes and slows beyond; wider
    # populations are split into sequential slices of this width (one compile for all).
    cpu_lane_width: int = 64
    gpu_lane_width: int = 1024


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
