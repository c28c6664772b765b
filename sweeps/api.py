"""A sweep from Python objects (a notebook): the user's model, loss, metrics and data as they are.

    report = sweeps.run_sweep(
        {"name": "mine", "search": {"optimizer": ["adam", "sgd"]}},
        model=MyNet, loss=my_loss, data={"x": x, "y": y}, executor="inline",
    )
    report.table          # the verdict table (Markdown; shown as a table in a notebook)
    report.plots          # the plot files
    report.groups_frame() # pandas: one row per optimizer and schedule (best LR, zone, edge...)
    report.lanes_frame()  # pandas: one row per lane (LR, seed, status, losses, run id)
    report.history_frame()  # pandas: the eval points of every lane, long format

A progress bar shows while it runs (`progress=False`: none); the MLflow links at the end.

Objects are registered under `obj:` references (models/imports.py) and the spec names them, so
the rest of the pipeline is the one the CLI runs: the same checks, the same folder, the same
MLflow runs. On Ray, they travel to the workers by value with each trial.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps import folder as files
from sweeps.console import print_mlflow, progress_bar, progress_text
from sweeps.pipeline import Prepared, new_sweep_id, prepare
from sweeps.pipeline import run_sweep as run_prepared
from sweeps.spec import SweepSpec, load_spec, parse_spec
from sweeps.stream import Progress
from sweeps.verdict.words import verdict_markdown

if TYPE_CHECKING:
    import pandas as pd


class Report(dict):
    """report.json as a dict (the contract), with what a notebook wants to look at."""

    def __init__(self, report: Mapping[str, Any], folder: Path):
        super().__init__(report)
        self.folder = Path(folder)

    @property
    def table(self) -> str:
        """The verdict: per optimizer and schedule, best LR, zone, stability edge, statuses."""
        return verdict_markdown(self)

    @property
    def winner(self) -> dict[str, Any] | None:
        return self.get("winner")

    @property
    def plots(self) -> list[Path]:
        return sorted((self.folder / files.PLOTS).glob("*.png"))

    def groups_frame(self) -> pd.DataFrame:
        """One row per optimizer x schedule, in the report's order (rank 1 first). The zone
        and the status counts are columns of their own; the LR curve is left out."""
        import pandas as pd

        rows = []
        for g in self["groups"]:
            row = {k: v for k, v in g.items() if k not in ("zone", "status_counts", "curve")}
            zone = g.get("zone") or {}
            row["zone_low"], row["zone_high"] = zone.get("low"), zone.get("high")
            for status, n in (g.get("status_counts") or {}).items():
                row[f"n_{status}"] = n
            rows.append(row)
        return pd.DataFrame(rows)

    def lanes_frame(self) -> pd.DataFrame:
        """One row per lane (an optimizer, schedule, LR and seed): its status, losses, metric,
        divergence step and MLflow run id; the histories are in `history_frame()`."""
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in lane.items() if k != "history"}
                             for lane in self["lanes"]])  # fmt: skip

    def history_frame(self) -> pd.DataFrame:
        """Every lane's eval points, one row each: lane, step, train/val loss, metric, LR."""
        import pandas as pd

        frames = [
            pd.DataFrame({"lane": lane["lane"], **lane["history"]})
            for lane in self["lanes"]
            if lane.get("history")
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def print_mlflow(self) -> None:
        """Where the runs are: the tracking URI and the links to the MLflow UI's runs view."""
        from sweeps.settings import get_settings

        print_mlflow(self, get_settings().mlflow_ui_url)

    def _repr_markdown_(self) -> str:  # Jupyter shows the table
        return self.table


def run_sweep(
    spec: Prepared | SweepSpec | Mapping[str, Any] | str | Path,
    out_dir: str | Path | None = None,
    *,
    model: Callable[..., Any] | None = None,
    loss: Callable[..., Any] | str | None = None,
    metrics: Callable[..., Any] | None = None,
    metric: str | None = None,
    higher_is_better: bool = True,
    data: Mapping[str, Any] | tuple | Callable[..., Any] | None = None,
    base_dir: str | Path | None = None,
    progress: bool = True,
    **options: Any,
) -> Report:
    """Run a sweep and return its report.

    `spec` is a prepared sweep, a spec (object, dict, or file), whose missing parts come from
    the objects: `model` an nnx.Module class or factory (`functools.partial` for fixed
    arguments; the spec's `model.args` are passed too); `loss` a function `(pred, y) ->
    scalar` or a built-in name; `metrics` a function `(pred, y) -> {name: scalar}` with
    `metric` the one the verdict reports; `data` a mapping of arrays (x/y, or
    x_train/y_train/x_val/y_val), a pair (x, y), or a loader function. `options` go to
    `sweeps.pipeline.run_sweep` (executor="inline" | "ray", tracking_uri, track, ...).
    `progress`: a live bar (what it does before training, then lane-steps), and the MLflow
    links once done; False for neither.
    """
    if isinstance(spec, Prepared):
        if any(v is not None for v in (model, loss, metrics, data)):
            raise ValueError("objects go with a spec, not with an already prepared sweep")
        prepared = spec
    else:
        raw, spec_dir = _raw_spec(spec)
        _fill(raw, model=model, loss=loss, metrics=metrics, metric=metric,
              higher_is_better=higher_is_better, data=data)  # fmt: skip
        base = Path(base_dir) if base_dir else spec_dir
        prepared = prepare(parse_spec(raw), base_dir=base)
    from sweeps.core.compile_cache import use_persistent_cache
    from sweeps.settings import get_settings

    if options.get("executor", "ray") == "inline":  # a later kernel compiles nothing again
        use_persistent_cache(get_settings().compile_cache)
    if out_dir is None:  # a folder of its own per call: a re-run cell never reuses one
        options.setdefault("sweep_id", new_sweep_id(prepared.spec))
        out_dir = Path("runs") / options["sweep_id"]
    out = Path(out_dir)
    if not progress:
        return Report(run_prepared(prepared, out, **options), out)
    forward = options.pop("on_progress", None)
    with progress_bar() as bar:
        task = bar.add_task("starting", total=1.0)

        def on_progress(p: Progress) -> None:
            bar.update(task, completed=p.fraction, description=progress_text(p))
            if forward:
                forward(p)

        report = Report(run_prepared(prepared, out, on_progress=on_progress, **options), out)
    print_mlflow(report, get_settings().mlflow_ui_url)
    return report


def _raw_spec(spec: SweepSpec | Mapping[str, Any] | str | Path) -> tuple[dict, Path | None]:
    if isinstance(spec, SweepSpec):
        return spec.model_dump(mode="json", by_alias=True), None
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        return load_spec(path).model_dump(mode="json", by_alias=True), path.parent
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in spec.items()}, None


def _fill(raw: dict, *, model, loss, metrics, metric, higher_is_better, data) -> None:
    from models import imports

    if model is not None:
        args = dict((raw.get("model") or {}).get("args", {}))
        if isinstance(model, functools.partial):  # fixed arguments travel as the spec's args
            args = {**model.keywords, **args}
            model = model.func
        raw["model"] = {"import": imports.register_object(model), "args": args}
    if loss is not None:
        raw["loss"] = loss if isinstance(loss, str) else {"import": imports.register_object(loss)}
    if metrics is not None:
        if metric is None:
            raise ValueError("metrics: say which of its values the verdict reports (metric=...)")
        raw["metrics"] = {
            "import": imports.register_object(metrics),
            "metric": metric,
            "higher_is_better": higher_is_better,
        }
    if data is not None:
        kept = {k: v for k, v in (raw.get("data") or {}).items()
                if k in ("target", "task", "val_fraction", "standardize") and v is not None}  # fmt: skip
        if isinstance(data, tuple):
            data = {"x": data[0], "y": data[1]}
        raw["data"] = {**kept, "import": imports.register_object(data)}
