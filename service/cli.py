"""The `goldilocks` command: the sweep commands (sweeps/cli.py) and the service's (serve,
submit, status, list, cancel, report: service/client_cli.py) on one Typer app.

It lives here because service depends on sweeps, never the reverse.
"""

from __future__ import annotations

from service import client_cli
from sweeps import cli as sweeps_cli

app = sweeps_cli.new_app()
sweeps_cli.register(app)
client_cli.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
