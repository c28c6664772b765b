"""How a sweep can fail, in one light module (no JAX): the CLI and the service import it fast."""


class SpecError(ValueError):
    """Invalid spec. `errors` holds one "field: message" line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid sweep spec:\n" + "\n".join(f"  - {e}" for e in errors))


class FolderError(ValueError):
    """A sweep folder whose state files cannot be read (missing, truncated, not JSON): the
    message names the file. Bad input, like a bad spec: `resume` refuses it and exits 2."""


class SweepInterrupted(Exception):
    """Stopped (Ctrl-C, SIGTERM, a cancel) before every trial finished; `resume` continues it."""


class SweepFailed(Exception):
    """A trial failed beyond its retries, or the sweep could not run."""


# Exit codes of `goldilocks run`/`resume`; the service's runner reads its drivers' with them.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
