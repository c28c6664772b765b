"""What the API shows of a sweep's progress.json: the counts, the ETA, and what the sweep does
before it trains (the lane width measured first)."""

from __future__ import annotations

from types import SimpleNamespace

from service.store import SweepStatus, utcnow
from service.views import progress
from sweeps.folder import SweepFolder
from sweeps.stream import Progress


def _running():
    return SimpleNamespace(status=SweepStatus.running, started_at=utcnow())


def test_the_phase_before_training_is_shown(tmp_path):
    SweepFolder(tmp_path).write_progress(Progress(phase="measuring the lane width").as_dict())
    shown = progress(_running(), tmp_path)
    assert shown.phase == "measuring the lane width" and shown.fraction == 0.0


def test_training_progress_has_no_phase_and_an_eta(tmp_path):
    p = Progress(lane_steps_done=50, lane_steps_total=100, lanes_total=4, trials_total=2)
    SweepFolder(tmp_path).write_progress(p.as_dict())
    shown = progress(_running(), tmp_path)
    assert shown.phase == "" and shown.fraction == 0.5 and shown.eta_s is not None
