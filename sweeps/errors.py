"""How a sweep can end other than with a report (shared by executors, the CLI and the service)."""


class SweepInterrupted(Exception):
    """Stopped (Ctrl-C, SIGTERM, a cancel) before every trial finished; `resume` continues it."""


class SweepFailed(Exception):
    """A trial failed beyond its retries, or the sweep could not run."""
