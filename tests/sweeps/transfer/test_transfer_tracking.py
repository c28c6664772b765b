"""What MLflow's parent run gets of a transfer sweep: distinct keys per value, the prediction."""

from __future__ import annotations

from sweeps.tracking.naming import report_metrics


def _group(batch):
    return {"optimizer": "sgd", "schedule": "cosine", "optimizer_args": {},
            "schedule_args": {"final_fraction": 0.0}, "batch_size": batch, "best_lr": 0.1 * batch,
            "zone": None}  # fmt: skip


def test_groups_of_each_batch_size_and_the_prediction_get_their_own_metrics():
    report = {
        "metric": "accuracy",
        "groups": [_group(16), _group(32)],
        "transfer": {"batch_size": {"groups": [{
            "optimizer": "sgd", "schedule": "cosine", "fit": {"exponent": 0.5},
            "prediction": {"best_lr": 6.4, "reliable": True},
            "verification": {"best_lr": 6.0, "prediction_error": 0.09},
        }]}},
    }  # fmt: skip
    metrics = dict(report_metrics(report))
    best = {k: v for k, v in metrics.items() if k.endswith(".best_lr")}
    assert sorted(best.values()) == [1.6, 3.2] and len(best) == 2
    assert metrics["transfer.batch_size.sgd.cosine.predicted_lr"] == 6.4
    assert metrics["transfer.batch_size.sgd.cosine.prediction_error"] == 0.09
    assert metrics["transfer.batch_size.sgd.cosine.reliable"] == 1.0


def test_the_table_marks_a_direct_check_on_the_edge_of_its_range():
    from sweeps.verdict.words import transfer_rows

    group = {"optimizer": "sgd", "schedule": "cosine", "points": [{"value": 16, "best_lr": 0.5}],
             "fit": None, "prediction": {"best_lr": None, "reliable": False, "note": "why"},
             "verification": {"best_lr": 1.0, "at_range_edge": True}}  # fmt: skip
    report = {"transfer": {"batch_size": {"target": 256, "groups": [group]}}}
    ((cells, note),) = transfer_rows(report)
    assert cells[6] == "1 (range edge)" and cells[-1] == "no" and note == "sgd · cosine: why"
