"""What the API shows of a sweep's progress.json: the counts, the stage, and an ETA from the
pace measured while training (the measuring and compiling before it say nothing of it)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from service.store import SweepStatus, utcnow
from service.views import progress
from sweeps.folder import SweepFolder
from sweeps.stream import Progress, progress_writer


def _running(started_s_ago: float = 0.0):
    started = utcnow() - timedelta(seconds=started_s_ago)
    return SimpleNamespace(status=SweepStatus.running, started_at=started)


def test_the_phase_before_training_is_shown(tmp_path):
    SweepFolder(tmp_path).write_progress(Progress(phase="measuring the lane width").as_dict())
    shown = progress(_running(), tmp_path)
    assert shown.phase == "measuring the lane width" and shown.fraction == 0.0


def test_no_eta_before_the_pace_is_measured(tmp_path):
    # Half done, a long start behind it: the old estimate extrapolated from the start time.
    p = Progress(lane_steps_done=50, lane_steps_total=100, lanes_total=4, stage="training")
    SweepFolder(tmp_path).write_progress(p.as_dict())
    assert progress(_running(started_s_ago=300), tmp_path).eta_s is None


def test_the_eta_is_the_drivers_estimate_at_the_measured_pace(tmp_path):
    p = Progress(lane_steps_done=50, lane_steps_total=100, lanes_total=4, trials_total=2)
    p.stage, p.lane_steps_per_s, p.eta_s = "training", 10.0, 5.0
    SweepFolder(tmp_path).write_progress(p.as_dict())
    shown = progress(_running(started_s_ago=300), tmp_path)
    assert shown.stage == "training" and shown.fraction == 0.5
    assert shown.lane_steps_per_s == 10.0 and 4.0 <= shown.eta_s <= 5.0  # not 300 s


def test_the_writer_measures_the_pace_from_the_first_lane_steps(tmp_path, monkeypatch):
    saved, clock = [], [1000.0]
    monkeypatch.setattr("sweeps.stream.time.monotonic", lambda: clock[0])
    write = progress_writer(saved.append, None)
    write(Progress(phase="measuring", stage="measuring"))
    clock[0] += 30  # measuring, starting, compiling: 30 s with nothing trained
    write(Progress(stage="starting"))  # a new stage is written at once
    assert [s["stage"] for s in saved] == ["measuring", "starting"]
    p = Progress(lane_steps_done=10, lane_steps_total=110, stage="training")
    write(p)
    assert p.eta_s is None  # one point: no pace yet
    clock[0] += 2
    p.lane_steps_done = 30
    write(p)
    assert p.lane_steps_per_s == 10.0 and p.eta_s == 8.0  # 80 left at 10/s
    assert saved[-1]["eta_s"] == 8.0 and saved[-1]["stage"] == "training"
