"""JAX's persistent compilation cache, turned on by the entry points (CLI, Python API) for
sweeps that train in their own process.

A warm `goldilocks run --executor inline` of the demo otherwise compiles its nine programs
again in every process: 4.2 s of an 8 s sweep, 0.8 s from the cache. Ray trial workers get the
same folder through their environment (sweeps/exec/raytune/cluster.py). Not for a Ray sweep's
driver: it compiles the trials' programs ahead and serializes them, and an executable read
back from the cache serializes without its code ("Function wrapped_broadcast.1 not found" in
the trial, jax 0.10).
"""

from __future__ import annotations

from pathlib import Path


def use_persistent_cache(path: Path) -> None:
    """Compiled programs are kept in `path` and read back by later processes. Call it before
    the first compile (JAX reads the setting once)."""
    import jax

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def persistent_cache_on() -> bool:
    """This process reads compiled programs from a persistent cache (an inline sweep ran here
    before: a notebook, a test), so it must not serialize executables for other processes."""
    import jax

    return bool(jax.config.jax_compilation_cache_dir)
