"""Compile the trials' programs in the driver while Ray starts, and hand them to the trials.

A fresh Ray trial process otherwise spends about 2 s of its start-up compiling its
population's programs, and every trial of the same structure compiles the same programs
again. The driver is mostly waiting while Ray starts (6-7 s on 2 cores), so it compiles each
distinct structure once in a background thread, serializes the executables
(`jax.experimental.serialize_executable`) and writes them to a file in the sweep folder. The
trials are handed the file's name as they are created, without waiting for the compile; a
trial reads the file once its process is up (that takes seconds: Ray Tune and JAX imports),
waiting for it if need be, and loads the programs in about 0.1 s instead of compiling.

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
import time
from dataclasses import dataclass, field
from pathlib import Path

from sweeps.core.data import Dataset
from sweeps.core.population import compile_population
from sweeps.core.program import Structure, get_program
from sweeps.exec.trial import hyperparams_for, seeds_for, structure_for, trial_threads
from sweeps.plan.lanes import Population
from sweeps.spec import SweepSpec

log = logging.getLogger(__name__)


@dataclass
class Programs:
    """Serialized executables per structure, and where they were compiled."""

    host: str
    jax_version: str
    by_structure: dict[Structure, dict[tuple, bytes]] = field(default_factory=dict)
    compile_s: float = 0.0  # the driver's time compiling them


def compile_programs(
    spec: SweepSpec,
    data: Dataset,
    populations: list[Population],
    stop: threading.Event | None = None,
    threads: int | None = None,
    widths: dict[str, int] | None = None,
) -> Programs:
    """Compile and serialize the programs of every distinct population shape, in plan order
    (the order trials start). `stop` ends the work after the structure in progress, and
    after the first one at the earliest: the first trial always needs it."""
    import jax
    from jax.experimental.serialize_executable import serialize

    programs = Programs(socket.gethostname(), jax.__version__)
    if threads is None:  # as the trials will train
        threads = trial_threads(spec, len(populations))
    done: set[tuple] = set()
    for pop in populations:
        if stop is not None and stop.is_set() and programs.by_structure:
            break
        structure = structure_for(spec, pop, data)
        width = (widths or {}).get(pop.id)
        if (structure, len(pop.lanes), width) in done:
            continue
        done.add((structure, len(pop.lanes), width))
        t0 = time.perf_counter()
        prog = compile_population(
            structure, data, hyperparams_for(pop), seeds_for(pop), width=width, threads=threads
        )
        programs.compile_s += time.perf_counter() - t0
        blobs = programs.by_structure.setdefault(structure, {})
        for key, compiled in prog.executables().items():
            try:
                blobs[key] = pickle.dumps(serialize(compiled))
            except Exception as err:  # e.g. a program with closed-over constants
                log.debug("cannot serialize %s: %s", key[0], err)
    return programs


@dataclass(frozen=True)
class ProgramsFile:
    """What a trial is handed: where the driver writes its programs once they are compiled.

    A file, not the programs: the driver hands it over as the trials are created and goes on
    compiling while their processes start (seconds); a trial reads it when it needs it."""

    path: str
    host: str
    jax_version: str


# A trial waits this long for the driver's programs, then compiles itself: longer than the
# driver takes to finish one structure on a busy machine (7-11 s measured on 2 cores).
WAIT_S = 15.0


def install_programs(
    source: Programs | ProgramsFile | None, data: Dataset, wait_s: float = WAIT_S
) -> int:
    """In a trial process: adopt the driver's executables; returns how many were loaded."""
    if source is None:
        return 0
    import jax
    from jax.experimental.serialize_executable import deserialize_and_load

    if (source.host, source.jax_version) != (socket.gethostname(), jax.__version__):
        return 0  # another machine (or another jaxlib): its CPU code may not run here
    programs = _read_when_written(source, wait_s) if isinstance(source, ProgramsFile) else source
    loaded = 0
    for structure, blobs in programs.by_structure.items() if programs else ():
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


def _read_when_written(source: ProgramsFile, wait_s: float) -> Programs | None:
    path = Path(source.path)
    deadline = time.monotonic() + wait_s
    while not path.exists():
        if time.monotonic() > deadline:
            log.warning("no precompiled programs after %.0f s: compiling here", wait_s)
            return None
        time.sleep(0.05)
    try:
        return pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError):  # removed at the sweep's end, say
        return None


class CompileAhead:
    """`compile_programs` in a background thread from Ray's start; the programs are written to
    `path` (atomically) when done, for the trials to read."""

    def __init__(
        self,
        spec: SweepSpec,
        data: Dataset,
        populations: list[Population],
        path: Path,
        threads: int | None = None,
        widths: dict[str, int] | None = None,
    ):
        import jax

        self.path = path.resolve()  # trials run in their own working directories
        self.handle = ProgramsFile(str(self.path), socket.gethostname(), jax.__version__)
        self.programs: Programs | None = None
        self._stop = threading.Event()
        self._discarded = False
        self._writing = threading.Lock()
        self._thread = threading.Thread(
            target=self._run,
            args=(spec, data, populations, threads, widths),
            name="compile-ahead",
            daemon=True,
        )
        self._thread.start()

    def _run(self, spec, data, populations, threads, widths) -> None:
        # Behind Ray's own start-up for the CPU: a slower Ray start delays everything.
        with contextlib.suppress(AttributeError, OSError):  # per-thread niceness: Linux
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            self.programs = compile_programs(spec, data, populations, self._stop, threads, widths)
        except Exception as err:  # the trials compile for themselves
            log.warning("compiling ahead failed: %s", err)
        # Written even when empty, so no trial waits for programs that will never come.
        with self._writing:
            if not self._discarded:
                partial = self.path.with_suffix(".partial")
                partial.write_bytes(pickle.dumps(self.programs))
                os.replace(partial, self.path)

    def take(self) -> ProgramsFile:
        """The trials are being created: finish the structure in progress (and the first one,
        which the first trial needs), then stop. Does not wait: returns where to look."""
        self._stop.set()
        return self.handle

    def discard(self) -> None:
        """The sweep ended before its trials (Ray failed to start, Ctrl-C): stop soon, write
        nothing, leave nothing in the sweep folder. Does not wait."""
        self._stop.set()
        with self._writing:
            self._discarded = True
            self.path.unlink(missing_ok=True)

    def close(self) -> Programs | None:
        """Wait for the thread, remove the file; what was compiled (None if it failed)."""
        self._thread.join()
        self.path.unlink(missing_ok=True)
        return self.programs
