"""A job-store row plus its sweep folder -> what the API answers."""

from __future__ import annotations

from datetime import UTC, datetime

from service.folders import list_plots, read_progress, sweep_folder
from service.schemas import SweepMlflow, SweepProgress, SweepPublic, SweepSummary
from service.settings import ServiceSettings
from service.store import Sweep, SweepStatus, utcnow
from sweeps.folder import REPORT


def summary(sweep: Sweep) -> SweepSummary:
    return SweepSummary(**_summary_fields(sweep))


def public(sweep: Sweep, settings: ServiceSettings) -> SweepPublic:
    folder = sweep_folder(settings.sweeps_dir, sweep.id)
    plots = list_plots(folder)
    return SweepPublic(
        **_summary_fields(sweep),
        spec=sweep.spec,
        progress=progress(sweep, folder),
        mlflow=mlflow_links(sweep, settings.mlflow_ui_url),
        attempts=sweep.attempts,
        report_url=f"/sweeps/{sweep.id}/report" if (folder / REPORT).exists() else None,
        plot_urls={p.removesuffix(".png"): f"/sweeps/{sweep.id}/plots/{p}" for p in plots},
    )


def _summary_fields(sweep: Sweep) -> dict:
    return {
        "id": sweep.id,
        "name": sweep.name,
        "status": sweep.status,
        "executor": sweep.executor,
        "created_at": sweep.created_at,
        "started_at": sweep.started_at,
        "finished_at": sweep.finished_at,
        "error": sweep.error,
        "cancel_requested": sweep.cancel_requested,
        "url": f"/sweeps/{sweep.id}",
    }


def progress(sweep: Sweep, folder) -> SweepProgress | None:
    raw = read_progress(folder)
    if raw is None:
        return None
    known = set(SweepProgress.model_fields) - {"eta_s", "updated_at"}
    values = {k: raw[k] for k in known if isinstance(raw.get(k), int | float)}
    if isinstance(raw.get("phase"), str):  # what happens before training, e.g. measuring
        values["phase"] = raw["phase"]
    p = SweepProgress(**values)
    if isinstance(raw.get("updated_at"), int | float):
        p.updated_at = datetime.fromtimestamp(raw["updated_at"], UTC)
    f = p.fraction
    if sweep.status == SweepStatus.running and sweep.started_at and 0 < f < 1:
        # From the sweep's start: that includes start-up (imports, compiles), which makes the
        # estimate pessimistic early on and accurate towards the end.
        elapsed = (utcnow() - sweep.started_at).total_seconds()
        p.eta_s = round(max(0.0, elapsed * (1 - f) / f), 1)
    elif sweep.status == SweepStatus.succeeded:
        p.eta_s = 0.0
    return p


def mlflow_links(sweep: Sweep, ui_url: str | None) -> SweepMlflow | None:
    if not sweep.experiment_id:
        return None
    links = SweepMlflow(experiment_id=sweep.experiment_id, parent_run_id=sweep.parent_run_id)
    if ui_url:
        base = ui_url.rstrip("/")
        links.experiment_url = f"{base}/#/experiments/{sweep.experiment_id}"
        if sweep.parent_run_id:
            links.parent_run_url = f"{links.experiment_url}/runs/{sweep.parent_run_id}"
    return links
