"""The sweep commands of `goldilocks` (validate, run, resume, lr-find): thin wrappers over
importable library functions. The root app (service/cli.py) adds the service's commands;
`app` here is these commands alone.

Exit codes (sweeps.errors): 0 success, 1 the sweep failed, 2 bad input (nothing written),
130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from sweeps import folder as files
from sweeps.console import (
    console,
    err_console,
    plural,
    print_lr_find,
    print_mlflow,
    print_verdict,
    progress_bar,
    progress_text,
)
from sweeps.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, FolderError, SpecError

if TYPE_CHECKING:
    from sweeps.spec import SweepSpec

# Heavy imports (JAX, Ray, MLflow) happen inside the commands that need them, so
# `goldilocks --help`, `status` or `list` answer at once. The spec module is light (its
# registries import JAX on first use): a command reads and validates the spec before it imports
# the pipeline, so a typo is answered without JAX.

HELP = "Goldilocks: find the learning rates that train, for every optimizer and schedule."


def new_app() -> typer.Typer:
    return typer.Typer(help=HELP, no_args_is_help=True, pretty_exceptions_enable=False)


SpecArg = Annotated[Path, typer.Argument(help="Sweep spec (YAML or JSON).", show_default=False)]


def _fail_input(err: Exception) -> None:
    # The message echoes user input (keys, paths): escape it so rich never reads it as markup,
    # and never wrap it, so each "field: message" line stays whole in logs.
    err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _load(spec_path: Path) -> SweepSpec:
    from sweeps.spec import load_spec

    try:
        return load_spec(spec_path)
    except SpecError as err:
        _fail_input(err)
        raise  # unreachable: _fail_input exits


def validate(spec: SpecArg) -> None:
    """Check a spec (and its data) without running anything."""
    parsed = _load(spec)  # before the pipeline's import (JAX): a bad spec is answered at once
    from sweeps.pipeline import prepare

    try:
        prepared = prepare(parsed, base_dir=spec.parent.resolve())
    except SpecError as err:
        _fail_input(err)
    planner = prepared.planner
    plan = (
        _lane_text(prepared)  # tpe makes its lanes as it runs: say how many it will make
        if planner.adaptive
        else f"{len(planner.lanes)} lanes in {len(planner.populations)} populations"
    )
    console.print(
        f"[green]ok[/] {parsed.name}: {plan}, data '{prepared.data.name}' "
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
# The service's driver: the Ray it names runs on this machine (the service's own).
SameHostOpt = Annotated[bool, typer.Option("--ray-same-host", hidden=True)]


def run(
    spec: SpecArg,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for report.json and plots (default runs/<sweep id>, new each run). "
            "A folder of another sweep is refused unless --overwrite.",
            show_default=False,
        ),
    ] = None,
    executor: ExecutorOpt = "ray",
    tracking_uri: TrackingOpt = None,
    ray_address: RayAddressOpt = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Start a new sweep in --out even if it holds another sweep: its files are "
            "replaced, its MLflow runs kept as they are (the new sweep makes its own)."
        ),
    ] = False,
    sweep_id: Annotated[str | None, typer.Option(help="Use this sweep id.", hidden=True)] = None,
    ray_same_host: SameHostOpt = False,
) -> None:
    """Run a sweep, print the verdict, write report.json and plots, log it all to MLflow."""
    parsed = _load(spec)
    from sweeps.pipeline import EXECUTORS, new_sweep_id, prepare

    if executor not in EXECUTORS:
        _fail_input(ValueError(f"--executor: unknown executor '{executor}'; choose ray or inline"))
    try:
        prepared = prepare(parsed, base_dir=spec.parent.resolve())
    except SpecError as err:
        _fail_input(err)
    if out is None:
        sweep_id = sweep_id or new_sweep_id(parsed)
        out = Path("runs") / sweep_id
    console.print(
        f"[bold]{parsed.name}[/]: {_lane_text(prepared)}, executor [cyan]{executor}[/], "
        f"folder {out}"
    )
    _run_and_report(
        prepared, out, executor, tracking_uri, ray_address, sweep_id, resume=False,
        overwrite=overwrite, same_host=ray_same_host,
    )  # fmt: skip


def resume(
    sweep_dir: Annotated[Path, typer.Argument(help="The folder of an interrupted sweep.")],
    tracking_uri: TrackingOpt = None,
    ray_address: RayAddressOpt = None,
    ray_same_host: SameHostOpt = False,
) -> None:
    """Resume an interrupted sweep from its folder (Ray Tune restores its trials)."""
    from sweeps.pipeline import load_for_resume

    if not files.SweepFolder(sweep_dir).has_run():
        missing = [n for n in (files.STATE, files.SPEC) if not (sweep_dir / n).exists()]
        _fail_input(
            ValueError(f"sweep_dir: {sweep_dir} is not a sweep folder (no {' or '.join(missing)})")
        )
    try:
        prepared, state = load_for_resume(sweep_dir)
    except (FolderError, SpecError) as err:  # a damaged folder, or data gone: nothing written
        _fail_input(err)
    if state.get("status") == "succeeded":
        _fail_input(ValueError(f"sweep_dir: sweep {state['sweep_id']} already succeeded"))
    uri = tracking_uri or (state.get("mlflow") or {}).get("tracking_uri")
    console.print(f"resuming [bold]{state['sweep_id']}[/] ({state.get('status')})")
    _run_and_report(
        prepared, sweep_dir, state.get("executor", "ray"), uri, ray_address, None, resume=True,
        same_host=ray_same_host,
    )  # fmt: skip


def _lane_text(prepared) -> str:
    planner = prepared.planner
    if planner.adaptive:
        n = prepared.spec.search.num_samples
        return f"{prepared.spec.search.method}: {n} points x {len(prepared.spec.train.seeds)} seeds"
    return f"{plural(len(planner.lanes), 'lane')}, {plural(len(planner.populations), 'population')}"


def _use_compile_cache() -> None:
    from sweeps.core.compile_cache import use_persistent_cache
    from sweeps.settings import get_settings

    use_persistent_cache(get_settings().compile_cache)


def _join_kept_head(executor: str, ray_address: str | None, settings):
    """The cluster a Ray sweep joins and the settings it runs with: the one named
    (--ray-address, RAY_ADDRESS), else the local head `goldilocks ray up` keeps (said plainly;
    this machine, so its trials may use what the driver compiles and measures), else None (a
    local Ray of its own)."""
    import os

    if executor != "ray" or ray_address or os.environ.get("RAY_ADDRESS"):
        return ray_address, settings
    from sweeps.exec.raytune import local_head

    head = local_head.find(settings.state_dir)
    if head is None:
        return None, settings
    os.environ.update(head.env())  # Ray's token, which ray.init reads
    console.print(
        f"Ray: joining the local head kept by `goldilocks ray up` ({head.address}); "
        "`goldilocks ray down` stops it"
    )
    return head.address, settings.model_copy(update={"ray_same_host": True})


def _run_and_report(
    prepared, out, executor, tracking_uri, ray_address, sweep_id, *, resume, overwrite=False,
    same_host=False,
):  # fmt: skip
    import signal

    from sweeps.errors import SweepFailed, SweepInterrupted
    from sweeps.pipeline import run_sweep
    from sweeps.settings import get_settings

    settings = get_settings()
    if same_host:  # the service's own Ray: this machine
        settings = settings.model_copy(update={"ray_same_host": True})
    ray_address, settings = _join_kept_head(executor, ray_address, settings)
    if executor == "inline":
        _use_compile_cache()

    # SIGTERM (a cancel, a stopping service) ends the sweep like Ctrl-C: runs closed KILLED,
    # the folder marked interrupted, resumable. Only the first one: a second SIGTERM arriving
    # during that clean-up must not cut it short. (The Ray executor refines this during fit.)
    def stop_once(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt("stopped by SIGTERM")

    signal.signal(signal.SIGTERM, stop_once)
    try:
        with progress_bar() as bar:
            task = bar.add_task("starting", total=1.0)

            def on_progress(p) -> None:
                bar.update(task, completed=p.fraction, description=progress_text(p))

            report = run_sweep(
                prepared, out, executor=executor, sweep_id=sweep_id, on_progress=on_progress,
                ray_address=ray_address, tracking_uri=tracking_uri, resume=resume,
                overwrite=overwrite, settings=settings,
            )  # fmt: skip
    except SweepInterrupted as err:
        err_console.print(
            f"[yellow]stopped:[/] {escape(str(err))}\nresume with: goldilocks resume {out}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except SpecError as err:
        _fail_input(err)
    except (SweepFailed, Exception) as err:
        # unwrapped, like _fail_input's: the path in an OSError stays whole in logs
        err_console.print(
            f"[bold red]sweep failed:[/] {escape(str(err))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(EXIT_FAILED) from None
    print_verdict(report)
    console.print(f"report: {out / files.REPORT}   plots: {out / files.PLOTS}")
    from sweeps.settings import get_settings

    print_mlflow(report, get_settings().mlflow_ui_url)
    if executor == "ray":  # everything is recorded: a Ray that lost its head must not hold us
        import os

        from sweeps.exec.raytune.cluster import leave_ray

        leave_ray(exit_code=0, address=ray_address or os.environ.get("RAY_ADDRESS"))


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

    parsed = _load(spec)
    from sweeps.lrfind import config_for, lr_find
    from sweeps.pipeline import prepare
    from sweeps.verdict.plots import plot_lr_find

    try:  # imports and data relative to the spec's folder, checked as `run` checks them
        prepared = prepare(parsed, base_dir=spec.parent.resolve())
        config = config_for(prepared.spec, min_lr=min_lr, max_lr=max_lr, steps=steps)
    except (SpecError, TypeError) as err:
        _fail_input(err)
    if not 0 < config.min_lr < config.max_lr or config.steps < 2:
        _fail_input(
            ValueError("--min-lr/--max-lr/--steps: need 0 < min-lr < max-lr and steps >= 2")
        )
    _use_compile_cache()
    with console.status(
        f"range test {config.min_lr:.0e} → {config.max_lr:.0e}, {config.steps} steps"
    ):
        result = lr_find(prepared.spec, prepared.data, config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lr_find.json").write_text(json.dumps(result, indent=1))
    plot_lr_find(result, out / "lr_find.png")
    print_lr_find(result)
    console.print(f"curve: {out / 'lr_find.png'}   data: {out / 'lr_find.json'}")


ray_app = typer.Typer(
    help="A local Ray head kept running between commands: `run` joins it (Ray's start paid once).",
    no_args_is_help=True,
)


@ray_app.command("up")
def ray_up(
    cpus: Annotated[int | None, typer.Option(help="CPUs it offers (default: all).")] = None,
) -> None:
    """Start a local Ray head and keep it: every `goldilocks run` on Ray joins it."""
    from sweeps.exec.raytune import local_head
    from sweeps.settings import get_settings

    state = get_settings().state_dir
    state.mkdir(parents=True, exist_ok=True)
    with console.status("starting a local Ray head"):
        head = local_head.start(state, cpus)
    console.print(
        f"Ray head kept at {head.address} ({plural(head.cpus, 'CPU')}, pid {head.pid}): "
        "`goldilocks run` joins it until `goldilocks ray down`"
    )


@ray_app.command("down")
def ray_down() -> None:
    """Stop the local Ray head `ray up` keeps."""
    from sweeps.exec.raytune import local_head
    from sweeps.settings import get_settings

    head = local_head.stop(get_settings().state_dir)
    console.print(f"stopped the Ray head at {head.address}" if head else "no kept Ray head runs")


@ray_app.command("status")
def ray_status() -> None:
    """Say whether a kept Ray head runs, and where."""
    from sweeps.exec.raytune import local_head
    from sweeps.settings import get_settings

    head = local_head.find(get_settings().state_dir)
    console.print(f"Ray head kept at {head.address} (pid {head.pid})" if head else "none")


def register(app: typer.Typer) -> None:
    """Add the sweep commands to `app`."""
    app.command()(validate)
    app.command()(run)
    app.command()(resume)
    app.command("lr-find")(lr_find_command)
    app.add_typer(ray_app, name="ray")


app = new_app()
register(app)


if __name__ == "__main__":
    app()
