"""A Ray trial sends several eval points per `tune.report` (each report is a round trip to the
driver); the driver unpacks them in order, and ASHA still gets one report per point."""

from __future__ import annotations

import time

from sweeps.exec.raytune.collector import Collector, PointLog
from sweeps.exec.raytune.trainable import Batcher


def _point(step: int) -> dict:
    return {"population_id": "p000-adam-constant", "eval_step": step}


def test_points_are_held_until_a_report_is_due_then_sent_in_order():
    batch = Batcher(per_point=False, every_s=60.0)
    assert not batch.due(_point(0)) and not batch.due(_point(10))
    report = batch.take(_point(20))  # e.g. with a checkpoint: always sent, held points along
    assert report["eval_step"] == 20  # the latest point is the report's own metrics
    assert [p["eval_step"] for p in report["earlier"]] == [0, 10]
    assert batch.held == [] and "earlier" not in batch.take(_point(30))


def test_a_report_is_due_once_the_hold_time_has_passed():
    batch = Batcher(per_point=False, every_s=0.05)
    assert not batch.due(_point(0))
    time.sleep(0.06)
    assert batch.due(_point(10))
    assert [p["eval_step"] for p in batch.take(_point(10))["earlier"]] == [0]


def test_with_asha_every_point_is_its_own_report():
    batch = Batcher(per_point=True, every_s=60.0)
    assert batch.due(_point(0)) and "earlier" not in batch.take(_point(0))


class _Dispatcher:
    def __init__(self):
        self.steps = []

    def point(self, tp) -> None:
        self.steps.append(tp)


def test_the_driver_unpacks_a_batched_report_in_order(tmp_path, monkeypatch):
    from sweeps.exec.raytune import collector as module

    monkeypatch.setattr(module.TrialPoint, "from_json", staticmethod(lambda d: d["eval_step"]))
    log = PointLog(tmp_path / "points.jsonl")
    dispatcher = _Dispatcher()
    Collector(dispatcher, log).result({**_point(20), "earlier": [_point(0), _point(10)]})
    assert dispatcher.steps == [0, 10, 20]
    assert [row["eval_step"] for row in log.read()] == [0, 10, 20]  # resume replays them all
    assert all("earlier" not in row for row in log.read())
