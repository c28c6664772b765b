"""Compile the trials' programs in the driver while Ray starts, and hand them to the trials.

A fresh Ray trial process otherwise spends about 2 s of its start-up compiling its
population's programs, and every trial of the same structure compiles the same programs
again. The driver is mostly waiting while Ray starts (7 s on 2 cores), so it compiles each
distinct structure once in a background thread, serializes the executables
(`jax.experimental.serialize_executable`) and passes them to the trials, which load them in
about 0.1 s instead of compiling.

Only where that is safe: trials on CPU (`gpus_per_trial == 0`) on this machine (a compiled
CPU program is specific to this CPU and this jaxlib), with a CPU backend in the driver too.
A trial that gets nothing usable (another host, a load error, a structure not compiled in
time) compiles for itself as before: precompiling only ever saves time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import threading
from dataclasses import dataclass, field

from sweeps.data import Dataset
from sweeps.plan import Population
from sweeps.population import Structure, compile_population, get_program
from sweeps.spec import SweepSpec
from sweeps.trial import hyperparams_for, seeds_for, structure_for

log = logging.getLogger(__name__)


@dataclass
class Programs:
    """Serialized executables per structure, and where they were compiled."""

    host: str
    jax_version: str
    by_structure: dict[Structure, dict[tuple, bytes]] = field(default_factory=dict)


def compile_programs(
    spec: SweepSpec,
    data: Dataset,
    populations: list[Population],
    stop: threading.Event | None = None,
) -> Programs:
    """Compile and serialize the programs of every distinct population shape, in plan order
    (the order trials start). `stop` ends the work after the structure in progress, and
    after the first one at the earliest: the first trial always needs it."""
    import jax
    from jax.experimental.serialize_executable import serialize

    programs = Programs(socket.gethostname(), jax.__version__)
    done: set[tuple] = set()
    for pop in populations:
        if stop is not None and stop.is_set() and programs.by_structure:
            break
        structure = structure_for(spec, pop, data)
        if (structure, len(pop.lanes)) in done:
            continue
        done.add((structure, len(pop.lanes)))
        prog = compile_population(structure, data, hyperparams_for(pop), seeds_for(pop))
        blobs = programs.by_structure.setdefault(structure, {})
        for key, compiled in prog.executables().items():
            try:
                blobs[key] = pickle.dumps(serialize(compiled))
            except Exception as err:  # e.g. a program with closed-over constants
                log.debug("cannot serialize %s: %s", key[0], err)
    return programs


def install_programs(programs: Programs | None, data: Dataset) -> int:
    """In a trial process: adopt the driver's executables; returns how many were loaded."""
    if programs is None:
        return 0
    import jax
    from jax.experimental.serialize_executable import deserialize_and_load

    if (programs.host, programs.jax_version) != (socket.gethostname(), jax.__version__):
        return 0  # another machine (or another jaxlib): its CPU code may not run here
    loaded = 0
    for structure, blobs in programs.by_structure.items():
        prog = get_program(structure, data)
        have = prog.executables()  # a reused trial process already holds them
        for key, blob in blobs.items():
            if key in have:
                continue
            try:
                prog.add_executable(key, deserialize_and_load(*pickle.loads(blob)))
                loaded += 1
            except Exception as err:  # compile it here instead
                log.warning("could not load a precompiled %s program: %s", key[0], err)
    return loaded


class CompileAhead:
    """`compile_programs` in a background thread, from Ray's start until the trials start."""

    def __init__(self, spec: SweepSpec, data: Dataset, populations: list[Population]):
        self._stop = threading.Event()
        self._result: Programs | None = None
        self._thread = threading.Thread(
            target=self._run, args=(spec, data, populations), name="compile-ahead", daemon=True
        )
        self._thread.start()

    def _run(self, spec, data, populations) -> None:
        # Behind Ray's own start-up for the CPU: a slower Ray start delays everything.
        with contextlib.suppress(AttributeError, OSError):  # per-thread niceness: Linux
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            self._result = compile_programs(spec, data, populations, self._stop)
        except Exception as err:  # the trials compile for themselves
            log.warning("compiling ahead failed: %s", err)

    def take(self) -> Programs | None:
        """Stop after the structure in progress; what was compiled (None if nothing)."""
        self._stop.set()
        self._thread.join()
        return self._result
