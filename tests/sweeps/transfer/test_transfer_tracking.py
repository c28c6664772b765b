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
