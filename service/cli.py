"""The `goldilocks` command: the sweep commands (sweeps/cli.py) and the service's (serve,
submit, status, list, cancel, report: service/client_cli.py) on one Typer app.

It lives here because service depends on sweeps, never the reverse.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading

from service import client_cli
from sweeps import cli as sweeps_cli

app = sweeps_cli.new_app()
sweeps_cli.register(app)
client_cli.register(app)


def main() -> None:
    """The console script. Once the command has ended, the process leaves as a normal exit
    would (threads joined, exit handlers run: MLflow, Ray, temporary folders; streams
    flushed) but without the interpreter's teardown of its ~3,000 modules (JAX, MLflow,
    SQLAlchemy, scikit-learn): about a second of every command, after its last line."""
    try:
        app()
        code: int | str | None = 0
    except SystemExit as done:
        code = done.code
    _leave(code)


def _leave(code: int | str | None) -> None:
    if isinstance(code, str):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    threading._shutdown()  # what a normal exit does first: wait for non-daemon threads
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":  # `python -m service.cli`: a plain exit (callers may catch it)
    app()
