"""The `goldilocks` command line: thin wrappers over importable library functions.

Exit codes: 0 success, 1 the sweep failed, 2 bad input (nothing written), 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sweeps.errors import SpecError

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

# Heavy imports (JAX via the spec's models, Ray, MLflow) happen inside the commands that need
# them, so `goldilocks --help`, `status` or `list` answer at once.

app = typer.Typer(
    help="Goldilocks: find the learning rates that train, for every optimizer and schedule.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Outside a terminal (CI logs, pipes) rich would wrap the verdict table at 80 columns.
console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True)

SpecArg = Annotated[Path, typer.Argument(help="Sweep spec (YAML or JSON).", show_default=False)]


def _fail_input(err: Exception) -> None:
    # The message echoes user input (keys, paths): escape it so rich never reads it as markup,
    # and never wrap it, so each "field: message" line stays whole in logs.
    err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _load(spec_path: Path) -> SweepSpec:
    from sweeps.spec import load_spec

    try:
        return load_spec(spec_path)
    except SpecError as err:
        _fail_input(err)
        raise  # unreachable: _fail_input exits


@app.command()
def validate(spec: SpecArg) -> None:
    """Check a spec (and its data) without running anything."""
    from sweeps.run import prepare

    parsed = _load(spec)
    try:
        prepared = prepare(parsed, base_dir=spec.parent)
    except SpecError as err:
        _fail_input(err)
    console.print(
        f"[green]ok[/] {parsed.name}: {len(prepared.lanes)} lanes in "
        f"{len(prepared.populations)} populations, data '{prepared.data.name}' "
        f"({prepared.data.n_train} train / {prepared.data.n_val} validation rows)"
    )
    for name in parsed.search.unused_args():
        console.print(f"[yellow]note:[/] search.{name} is taken by none of the chosen ones")


ExecutorOpt = Annotated[
    str, typer.Option(help="ray (Ray Tune: local, or RAY_ADDRESS) or inline (this process).")
]
TrackingOpt = Annotated[
    str | None,
    typer.Option(help="MLflow tracking URI (else MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."),
]
RayAddressOpt = Annotated[
    str | None, typer.Option(help="Join this Ray cluster (else RAY_ADDRESS, else local Ray).")
]


@app.command()
def run(
    spec: SpecArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json and plots.")] = Path(
        "runs/latest"
    ),
    executor: ExecutorOpt = "ray",
    tracking_uri: TrackingOpt = None,
    ray_address: RayAddressOpt = None,
    sweep_id: Annotated[str | None, typer.Option(help="Use this sweep id.", hidden=True)] = None,
) -> None:
    """Run a sweep, print the verdict, write report.json and plots, log it all to MLflow."""
    from sweeps.run import EXECUTORS, prepare

    parsed = _load(spec)
    if executor not in EXECUTORS:
        _fail_input(ValueError(f"--executor: unknown executor '{executor}'; choose ray or inline"))
    if executor == "inline" and parsed.search.method == "tpe":
        _fail_input(ValueError("--executor: search.method tpe needs the ray executor"))
    try:
        prepared = prepare(parsed, base_dir=spec.parent.resolve())
    except SpecError as err:
        _fail_input(err)
    console.print(f"[bold]{parsed.name}[/]: {_lane_text(prepared)}, executor [cyan]{executor}[/]")
    _run_and_report(prepared, out, executor, tracking_uri, ray_address, sweep_id, resume=False)


@app.command()
def resume(
    sweep_dir: Annotated[Path, typer.Argument(help="The folder of an interrupted sweep.")],
    tracking_uri: TrackingOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Resume an interrupted sweep from its folder (Ray Tune restores its trials)."""
    from sweeps.run import load_for_resume

    if not (sweep_dir / "sweep.json").exists() or not (sweep_dir / "spec.json").exists():
        _fail_input(ValueError(f"sweep_dir: {sweep_dir} is not a sweep folder (no sweep.json)"))
    try:
        prepared, state = load_for_resume(sweep_dir)
    except SpecError as err:
        _fail_input(err)
    if state.get("status") == "succeeded":
        _fail_input(ValueError(f"sweep_dir: sweep {state['sweep_id']} already succeeded"))
    uri = tracking_uri or (state.get("mlflow") or {}).get("tracking_uri")
    console.print(f"resuming [bold]{state['sweep_id']}[/] ({state.get('status')})")
    _run_and_report(
        prepared, sweep_dir, state.get("executor", "ray"), uri, ray_address, None, resume=True
    )


def _lane_text(prepared) -> str:
    if prepared.spec.search.method == "tpe":
        n = prepared.spec.search.num_samples
        return f"tpe: {n} points x {len(prepared.spec.train.seeds)} seeds"
    return f"{len(prepared.lanes)} lanes, {len(prepared.populations)} populations"


def _run_and_report(prepared, out, executor, tracking_uri, ray_address, sweep_id, *, resume):
    import signal

    from sweeps.errors import SweepFailed, SweepInterrupted
    from sweeps.run import run_sweep

    # SIGTERM (a cancel, a stopping service) ends the sweep like Ctrl-C: runs closed KILLED,
    # the folder marked interrupted, resumable. Only the first one: a second SIGTERM arriving
    # during that clean-up must not cut it short. (The Ray executor refines this during fit.)
    def stop_once(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt("stopped by SIGTERM")

    signal.signal(signal.SIGTERM, stop_once)
    try:
        with _progress_bar() as bar:
            task = bar.add_task("starting", total=1.0)

            def on_progress(p) -> None:
                bar.update(task, completed=p.fraction, description=_progress_text(p))

            report = run_sweep(
                prepared, out, executor=executor, sweep_id=sweep_id, on_progress=on_progress,
                ray_address=ray_address, tracking_uri=tracking_uri, resume=resume,
            )  # fmt: skip
    except SweepInterrupted as err:
        err_console.print(f"[yellow]stopped:[/] {err}\nresume with: goldilocks resume {out}")
        raise typer.Exit(130) from None
    except SpecError as err:
        _fail_input(err)
    except (SweepFailed, Exception) as err:
        err_console.print(f"[bold red]sweep failed:[/] {escape(str(err))}")
        raise typer.Exit(1) from None
    print_verdict(report)
    console.print(f"report: {out / 'report.json'}   plots: {out / 'plots'}")
    _print_mlflow(report)


def _print_mlflow(report: dict) -> None:
    info = report.get("mlflow")
    if not info:
        return
    from sweeps.tracking import ui_command

    console.print(
        f"MLflow: experiment {info['experiment_id']}, parent run {info['parent_run_id']} "
        f"at {info['tracking_uri']}\n  look: {ui_command(info['tracking_uri'])}"
    )


@app.command("lr-find")
def lr_find_command(
    spec: SpecArg,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for lr_find.json and the plot.")
    ] = Path("runs/lr-find"),
    min_lr: Annotated[float | None, typer.Option(help="Start of the ramp.")] = None,
    max_lr: Annotated[float | None, typer.Option(help="End of the ramp.")] = None,
    steps: Annotated[int | None, typer.Option(help="Steps of the ramp (default 100).")] = None,
) -> None:
    """The LR range test: ramp the LR exponentially, suggest where to look."""
    import json

    from sweeps.lrfind import config_for, lr_find
    from sweeps.plots import plot_lr_find
    from sweeps.run import prepare

    parsed = _load(spec)
    try:
        prepared = prepare(parsed, base_dir=spec.parent)
        config = config_for(parsed, min_lr=min_lr, max_lr=max_lr, steps=steps)
    except (SpecError, TypeError) as err:
        _fail_input(err)
    if not 0 < config.min_lr < config.max_lr or config.steps < 2:
        _fail_input(
            ValueError("--min-lr/--max-lr/--steps: need 0 < min-lr < max-lr and steps >= 2")
        )
    with console.status(
        f"range test {config.min_lr:.0e} → {config.max_lr:.0e}, {config.steps} steps"
    ):
        result = lr_find(parsed, prepared.data, config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lr_find.json").write_text(json.dumps(result, indent=1))
    plot_lr_find(result, out / "lr_find.png")
    table = Table(title="LR range test: suggestions", title_justify="left")
    for col in ("optimizer", "steepest", "valley"):
        table.add_column(col)
    for opt, s in result["suggestions"].items():
        table.add_row(opt, _fmt(s["steepest"]), _fmt(s["valley"]))
    console.print(table)
    console.print(f"curve: {out / 'lr_find.png'}   data: {out / 'lr_find.json'}")


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _progress_text(p) -> str:
    running = f", {p.trials_running} running" if p.trials_running else ""
    return f"trials {p.trials_done}/{p.trials_total}{running}"


def _fmt(v: Any, spec: str = ".3g") -> str:
    return "—" if v is None else format(v, spec)


def print_verdict(report: dict) -> None:
    table = Table(title=f"Goldilocks verdict — {report['name']}", title_justify="left")
    for col in ("#", "optimizer", "schedule", "best LR", "zone", "max stable", "min diverged"):
        table.add_column(col)
    table.add_column("best val loss", justify="right")
    table.add_column(f"val {report.get('metric', 'metric')}", justify="right")
    table.add_column("lanes c/s/u/d", justify="right")
    for g in report["groups"]:
        zone = g["zone"]
        zone_text = f"{_fmt(zone['low'])} – {_fmt(zone['high'])}" if zone else "—"
        best = _fmt(g["best_lr"]) + (f" [yellow](edge: {g['edge']})[/]" if g["edge"] else "")
        c = g["status_counts"]
        name = g["optimizer"] + (" (LR-free)" if g["lr_free"] else "")
        table.add_row(
            _fmt(g["rank"], "d"),
            name,
            g["schedule"],
            best,
            zone_text,
            _fmt(g["max_stable_lr"]),
            _fmt(g["min_diverged_lr"]),
            _fmt(g["best_val_loss"], ".4f"),
            _fmt(g["best_val_metric"], ".4f"),
            f"{c['converged']}/{c['stagnated']}/{c['unstable']}/{c['diverged']}",
        )
    console.print(table)
    w = report.get("winner")
    if w:
        console.print(
            f"[bold green]winner:[/] {w['optimizer']} · {w['schedule']} at LR {w['learning_rate']:.3g} "
            f"(seed {w['seed']}): val loss {_fmt(w['best_val_loss'], '.4f')}, "
            f"{report.get('metric', 'metric')} {_fmt(w['val_metric'], '.4f')}"
        )
    for g in report["groups"]:
        if g["edge"]:
            console.print(
                f"[yellow]warning:[/] {g['optimizer']} · {g['schedule']}: the best LR is at the "
                f"{g['edge']} edge of the searched range; widen learning_rate."
            )


def main() -> None:
    app()


from service.client_cli import register as _register_service  # noqa: E402

_register_service(app)

if __name__ == "__main__":
    main()
