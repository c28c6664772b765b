"""The MLflow block a sweep prints: the tracking URI, links that open the UI's runs view
(MLflow 3.17 opens experiments on its GenAI view unless the hash route's query says
`workflowType=machine_learning`: tests/sweeps/test_mlflow_ui.py checks it in a browser), the
`mlflow ui` command for a database; and where a new store keeps the Default experiment's
artifacts."""

from __future__ import annotations

from pathlib import Path

from sweeps.console import mlflow_lines
from sweeps.tracking.store import create_store_beside
from sweeps.tracking.uri import experiment_url, run_url, ui_links

ML = "workflowType=machine_learning"


def test_links_open_the_runs_view_with_the_query_in_the_hash_route():
    assert experiment_url("http://ui:5000/", "7") == f"http://ui:5000/#/experiments/7/runs?{ML}"
    assert run_url("http://ui:5000", "7", "abc") == f"http://ui:5000/#/experiments/7/runs/abc?{ML}"


def test_a_database_without_a_ui_gets_the_command_and_the_links_it_will_serve():
    links = ui_links("sqlite:////data/my store/mlflow.db", "3", "run9")
    assert links["tracking_uri"] == "sqlite:////data/my store/mlflow.db"
    assert (
        links["ui_command"] == "mlflow ui --backend-store-uri 'sqlite:////data/my store/mlflow.db'"
    )
    assert links["experiment_url"] == f"http://127.0.0.1:5000/#/experiments/3/runs?{ML}"
    assert links["parent_run_url"] == f"http://127.0.0.1:5000/#/experiments/3/runs/run9?{ML}"


def test_a_tracking_server_serves_the_ui_and_a_configured_url_wins():
    served = ui_links("http://mlflow:5000", "3", "run9")
    assert served["ui_command"] is None
    assert served["experiment_url"] == f"http://mlflow:5000/#/experiments/3/runs?{ML}"
    proxied = ui_links("http://mlflow:5000", "3", "run9", "https://ui.example.com/")
    assert proxied["parent_run_url"] == f"https://ui.example.com/#/experiments/3/runs/run9?{ML}"
    assert ui_links("sqlite:////x.db", "3", ui_url="http://ui")["ui_command"] is None


def test_printed_lines_name_the_store_and_each_link_whole():
    info = {"tracking_uri": "sqlite:////d/mlflow.db", "experiment_id": "3", "parent_run_id": "r"}
    lines = mlflow_lines(info, ui_links(**{k: info[k] for k in info}))
    text = "\n".join(lines)
    assert "tracking URI: sqlite:////d/mlflow.db" in text
    assert "open the UI: mlflow ui --backend-store-uri sqlite:////d/mlflow.db" in text
    assert f"  runs:  http://127.0.0.1:5000/#/experiments/3/runs?{ML}" in lines


def test_a_new_store_keeps_the_default_experiments_artifacts_beside_it(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    sweep_folder = tmp_path / "sweeps" / "first"  # where the service's first driver runs
    sweep_folder.mkdir(parents=True)
    monkeypatch.chdir(sweep_folder)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    create_store_beside(uri)
    default = MlflowClient(uri).get_experiment("0")
    location = Path(default.artifact_location.removeprefix("file://"))
    assert location == tmp_path / "store" / "mlartifacts" / "0"
    assert not (sweep_folder / "mlruns").exists()
    create_store_beside(uri)  # an existing store is left as it is
    assert MlflowClient(uri).get_experiment("0").artifact_location == default.artifact_location
