"""`goldilocks serve` and the service's client commands: submit, status, list, cancel, report.

Registered on the `goldilocks` Typer app by service/cli.py (`register(app)`). Nothing heavy is
imported at module level: every `goldilocks` start imports this module.

Client exit codes: 0 succeeded (or done), 1 the sweep failed (or the server refused: 409, 429,
5xx), 2 bad input (422/413/415, unknown id, missing token), 3 the sweep was cancelled,
4 the server is unreachable. `status` answers with the sweep's: 0 queued, running or
succeeded, 1 failed, 3 cancelled (a script can `goldilocks status ID || ...`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from service.client import GoldilocksClient

from sweeps.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK  # noqa: F401 (re-exported)

EXIT_CANCELLED, EXIT_UNREACHABLE = 3, 4  # the client's own, beyond the sweep commands'
_BAD_INPUT = {400, 401, 403, 404, 413, 415, 422}
_TERMINAL = ("succeeded", "failed", "cancelled")
# A sweep's status as an exit code: queued and running are not failures (yet).
_STATUS_EXIT = {"failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="GOLDILOCKS_SERVER",
        help="Service URL (default http://127.0.0.1:8000). Token: GOLDILOCKS_API_TOKEN.",
        show_default=False,
    ),
]
IdArg = Annotated[str, typer.Argument(help="The sweep id.", show_default=False)]


def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    from sweeps.console import console  # the verdict's console: same width rules

    return console, Console(stderr=True)


def _client(server: str | None) -> GoldilocksClient:
    from service.client import GoldilocksClient

    return GoldilocksClient(server)


@contextlib.contextmanager
def _handled() -> Iterator[None]:
    """Server errors -> a message naming the field or reason, and the exit code."""
    from rich.markup import escape

    from service.client import ApiError, ServerUnreachable

    err = _consoles()[1]
    try:
        yield
    except ServerUnreachable as exc:
        err.print(f"[bold red]error:[/] cannot reach the server: {escape(str(exc))}")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except ApiError as exc:
        err.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True, highlight=False)
        for line in exc.errors if len(exc.errors) > 1 else []:
            err.print(f"  - {escape(line)}", soft_wrap=True, highlight=False)
        if exc.status == 429 and "retry-after" in exc.headers:
            err.print(f"retry after {exc.headers['retry-after']} s")
        raise typer.Exit(EXIT_BAD_INPUT if exc.status in _BAD_INPUT else EXIT_FAILED) from None


def register(app: typer.Typer) -> None:
    """Add serve, submit, status, list, cancel and report to the `goldilocks` app."""
    app.command()(serve)
    app.command()(submit)
    app.command()(status)
    app.command("list")(list_sweeps)
    app.command()(cancel)
    app.command()(report)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the sweep service (HTTP API + runner). Settings: GOLDILOCKS_* variables."""
    import logging

    import uvicorn

    from service.app import create_app
    from service.settings import get_settings

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One process: the runner thread owns the drivers; several workers would race for them.
    uvicorn.run(create_app(get_settings()), host=host, port=port, log_level=log_level)


def submit(
    spec: Annotated[Path, typer.Argument(help="Sweep spec (YAML or JSON).", show_default=False)],
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow it to the end; show the verdict.")
    ] = False,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Retrying with the same key never queues it twice.")
    ] = None,
    poll: Annotated[float, typer.Option(help="Seconds between looks, with --wait.")] = 1.0,
    upload: Annotated[
        bool,
        typer.Option(
            help="Upload the local file a spec's data.path or data.text names (relative to the "
            "spec) and submit it as data.dataset; --no-upload sends the path for the server's "
            "datasets folder."
        ),
    ] = True,
    server: ServerOpt = None,
) -> None:
    """Submit a sweep to the service; with --wait, follow it and print the verdict.

    A local data file the spec names is uploaded first (POST /datasets). The files of
    `import:` references are not: the server imports code only from its own plugin folders
    (GOLDILOCKS_PLUGIN_PATH) and installed packages."""
    out, err = _consoles()
    try:
        body = spec.read_bytes()
    except OSError as exc:
        err.print(f"[bold red]error:[/] spec: cannot read {spec}: {exc.strerror}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    kind = "application/json" if spec.suffix.lower() == ".json" else "application/yaml"
    from service.client_submit import check_locally, local_spec, note_imports, upload_data

    raw = local_spec(body, kind)
    if raw is not None:
        check_locally(raw, err)
        note_imports(raw, err)
    with _handled(), _client(server) as client:
        sent = upload_data(client, raw, spec.parent, err) if raw is not None and upload else None
        if sent is None:  # as written: the server's errors point at the file's own lines
            created = client.submit(body, content_type=kind, idempotency_key=idempotency_key)
        else:
            created = client.submit(sent, idempotency_key=idempotency_key)
        out.print(f"submitted [bold]{created['id']}[/] ({created['name']}): {created['status']}")
        if wait:
            _follow(client, created["id"], poll, out, err)


def _follow(client: GoldilocksClient, sweep_id: str, poll: float, out, err) -> None:
    """A live progress bar until the sweep ends; then the verdict (or the error)."""
    from sweeps.console import print_verdict, progress_bar

    with progress_bar() as bar:
        task = bar.add_task("queued", total=1.0)
        while True:
            sweep = client.get(sweep_id)
            p = sweep.get("progress") or {}
            bar.update(task, completed=p.get("fraction", 0.0), description=_describe(sweep))
            if sweep["status"] in _TERMINAL:
                break
            time.sleep(poll)
    if sweep["status"] == "succeeded":
        print_verdict(client.report(sweep_id))
        _print_links(out, sweep)
        return
    if sweep["status"] == "cancelled":
        err.print(f"[yellow]cancelled:[/] sweep {sweep_id}")
        raise typer.Exit(EXIT_CANCELLED)
    from rich.markup import escape

    err.print(f"[bold red]sweep failed:[/] {escape(sweep.get('error') or 'no reason given')}")
    raise typer.Exit(EXIT_FAILED)


def _describe(sweep: dict[str, Any]) -> str:
    p = sweep.get("progress") or {}
    if sweep["status"] != "running" or not p:
        return sweep["status"]
    if p.get("phase"):
        return p["phase"]
    if p.get("stage") in _STAGE_TEXT:
        return _STAGE_TEXT[p["stage"]]
    running = f", {p['trials_running']} running" if p.get("trials_running") else ""
    return f"trials {p.get('trials_done', 0)}/{p.get('trials_total', 0)}{running}"


_STAGE_TEXT = {
    "measuring": "measuring the CPU lane width",
    "starting": "starting (MLflow, Ray, compiles ahead)",
    "compiling": "compiling the trials' programs",
}


def _progress_line(p: dict[str, Any]) -> str:
    """The status table's progress: what the sweep does before it trains (no 0/0 counts),
    then how far it is, at what measured pace, and the ETA from that pace."""
    stage = p.get("stage") or ("measuring" if p.get("phase") else "training")
    if stage != "training":
        what = p.get("phase") or _STAGE_TEXT.get(stage, stage)
        trials = (
            f"; trials {p['trials_done']}/{p['trials_total']}, {p['trials_running']} running"
            if p.get("trials_total")
            else ""
        )
        what = what if what.startswith(stage) else f"{stage}: {what}"
        return f"{what}{trials} (ETA once training has begun)"
    pace = p.get("lane_steps_per_s")
    pace_text = f", {pace:,.0f} lane-steps/s" if pace else ""
    eta = p.get("eta_s")
    eta_text = f", ETA {eta:.0f} s" if eta is not None else ", ETA after the next eval point"
    return (
        f"training: {100 * p['fraction']:.0f}% ({p['lane_steps_done']:,}/"
        f"{p['lane_steps_total']:,} lane-steps, {p['lanes_total']} lanes; trials "
        f"{p['trials_done']}/{p['trials_total']}, {p['trials_running']} running{pace_text}"
        f"{eta_text})"
    )


def _print_links(out, sweep: dict[str, Any]) -> None:
    from sweeps.console import mlflow_lines

    mlflow = sweep.get("mlflow") or {}
    if mlflow.get("parent_run_id"):
        for line in mlflow_lines(mlflow, mlflow):
            out.print(line, soft_wrap=True, highlight=False, markup=False)


def status(sweep_id: IdArg, server: ServerOpt = None) -> None:
    """Show one sweep: status, progress, ETA, MLflow ids, error. Exit code: 0 queued, running or
    succeeded; 1 failed; 3 cancelled."""
    from rich.markup import escape
    from rich.table import Table

    out, _ = _consoles()
    with _handled(), _client(server) as client:
        sweep = client.get(sweep_id)
    table = Table(show_header=False, title=f"sweep {sweep['id']}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("name", sweep["name"])
    table.add_row("status", sweep["status"] + (" (cancelling)" if _cancelling(sweep) else ""))
    p = sweep.get("progress")
    if p:
        table.add_row("progress", _progress_line(p))
    for key in ("created_at", "started_at", "finished_at"):
        if sweep.get(key):
            table.add_row(key.removesuffix("_at"), sweep[key])
    _mlflow_rows(table, sweep.get("mlflow") or {})
    if sweep.get("error"):
        table.add_row("error", escape(sweep["error"]))
    out.print(table)
    if code := _STATUS_EXIT.get(sweep["status"]):
        raise typer.Exit(code)


def _mlflow_rows(table, mlflow: dict[str, Any]) -> None:
    if mlflow.get("experiment_id"):
        table.add_row(
            "mlflow", f"experiment {mlflow['experiment_id']}, run {mlflow['parent_run_id']}"
        )
    rows = (("tracking URI", "tracking_uri"), ("open the UI", "ui_command"),
            ("runs", "experiment_url"), ("sweep run", "parent_run_url"))  # fmt: skip
    for label, key in rows:
        if mlflow.get(key):
            table.add_row(label, mlflow[key])


def _cancelling(sweep: dict[str, Any]) -> bool:
    return sweep["status"] == "running" and sweep.get("cancel_requested", False)


def list_sweeps(
    status: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many (newest first).")] = 0,
    server: ServerOpt = None,
) -> None:
    """List sweeps, newest first."""
    from rich.table import Table

    out, _ = _consoles()
    with _handled(), _client(server) as client:
        page = client.list(status=status, limit=limit, offset=offset)
    table = Table(title=f"sweeps ({page['total']} in all)", title_justify="left")
    for col in ("id", "name", "status", "created", "finished"):
        table.add_column(col)
    for s in page["items"]:
        table.add_row(s["id"], s["name"], s["status"], s["created_at"], s.get("finished_at") or "")
    out.print(table)


def cancel(
    sweep_id: IdArg,
    wait: Annotated[
        bool, typer.Option("--wait", help="Block until the sweep has ended (its driver stopped).")
    ] = False,
    poll: Annotated[float, typer.Option(help="Seconds between looks, with --wait.")] = 0.5,
    server: ServerOpt = None,
) -> None:
    """Cancel a queued or running sweep (its MLflow runs end KILLED). Returns once the cancel is
    recorded; a running sweep's driver then stops within seconds (--wait to see it end)."""
    from service.client import ApiError

    out, err = _consoles()
    with _handled(), _client(server) as client:
        try:
            sweep = client.cancel(sweep_id, wait=False)
        except ApiError as exc:
            if not (wait and exc.status == 409):
                raise
            sweep = client.get(sweep_id)  # ended meanwhile: by an earlier cancel, say
            if sweep["status"] != "cancelled":
                raise
        while wait and sweep["status"] not in _TERMINAL:
            time.sleep(poll)
            sweep = client.get(sweep_id)
    if sweep["status"] == "cancelled":
        out.print(f"cancelled {sweep_id}")
    elif sweep["status"] in _TERMINAL:  # it ended on its own before the driver was stopped
        err.print(f"sweep {sweep_id} {sweep['status']} before the cancel took effect")
        raise typer.Exit(_STATUS_EXIT.get(sweep["status"], EXIT_OK))
    else:
        out.print(f"cancelling {sweep_id}: its driver is stopping (goldilocks status {sweep_id})")


def report(
    sweep_id: IdArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json itself.")] = False,
    server: ServerOpt = None,
) -> None:
    """Print the verdict of a finished sweep (or its report.json)."""
    import json

    from sweeps.console import print_verdict

    out, _ = _consoles()
    with _handled(), _client(server) as client:
        data = client.report(sweep_id)
        sweep = None if as_json else client.get(sweep_id)
        server_url = client.server
    if as_json:
        out.print_json(json.dumps(data))
        return
    print_verdict(data)
    plots = sweep.get("plot_urls") or {}
    if plots:
        out.print("plots:", highlight=False)
        for name, url in sorted(plots.items()):
            out.print(f"  {name}: {server_url}{url}", soft_wrap=True, highlight=False)
    _print_links(out, sweep)
