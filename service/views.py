"""A job-store row plus its sweep folder -> what the API answers."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from service.folders import list_plots, read_progress, sweep_folder
from service.schemas import SweepMlflow, SweepProgress, SweepPublic, SweepSummary
from service.settings import ServiceSettings
from service.store import Sweep, SweepStatus
from sweeps.folder import REPORT
from sweeps.tracking.uri import ui_links


def summary(sweep: Sweep) -> SweepSummary:
    return SweepSummary(**_summary_fields(sweep))


def public(sweep: Sweep, settings: ServiceSettings) -> SweepPublic:
    folder = sweep_folder(settings.sweeps_dir, sweep.id)
    plots = list_plots(folder)
    return SweepPublic(
        **_summary_fields(sweep),
        spec=sweep.spec,
        progress=progress(sweep, folder),
        mlflow=mlflow_links(sweep, settings),
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
    for key in ("phase", "stage"):  # what happens before training, e.g. measuring
        if isinstance(raw.get(key), str):
            values[key] = raw[key]
    p = SweepProgress(**values)
    updated = raw.get("updated_at")
    if isinstance(updated, int | float):
        p.updated_at = datetime.fromtimestamp(updated, UTC)
    eta = raw.get("eta_s")
    if sweep.status == SweepStatus.running and isinstance(eta, int | float) and p.fraction < 1:
        # The driver's estimate at the measured pace (not from the sweep's start, which
        # counts measuring and compiling), less the time since it wrote it.
        since = time.time() - updated if isinstance(updated, int | float) else 0.0
        p.eta_s = round(max(0.0, eta - max(0.0, since)), 1)
    elif sweep.status == SweepStatus.succeeded:
        p.eta_s = 0.0
    return p


def mlflow_links(sweep: Sweep, settings: ServiceSettings) -> SweepMlflow | None:
    """Where the sweep's runs are: None until its driver opened its MLflow experiment (a
    client may take a non-null `mlflow` for "it is logging")."""
    if not sweep.experiment_id:
        return None
    links = ui_links(
        sweep.tracking_uri or settings.mlflow_uri,
        sweep.experiment_id,
        sweep.parent_run_id,
        settings.mlflow_ui_url,
    )
    return SweepMlflow(
        experiment_id=sweep.experiment_id, parent_run_id=sweep.parent_run_id, **links
    )
