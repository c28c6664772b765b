"""The compose topology without Docker: real processes on loopback, wired as docker/compose.yaml
wires them, through the same entry scripts (docker/bin/*):

PostgreSQL (job store and MLflow backend) <- `mlflow-serve` (basic-auth) <- `goldilocks-serve`
(joins the Ray cluster, runs `goldilocks serve`) -> `ray start --head` + a worker node.

A sweep submitted over HTTP must finish with its runs in the MLflow server; then the MLflow UI
of that server, opened in a real headless Chromium and logged in as the basic-auth admin,
must show the parent run with its child runs, and the Goldilocks plot among its artifacts.
Screenshots are kept in test-artifacts/ as evidence.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import tiny_spec_dict
from mlflow_server import _stop, _wait_healthy
from ray_cluster import ROOT, base_env, ray_cluster
from testlib import free_port, pg_admin_url, postgres_database

BIN = ROOT / "docker" / "bin"
ARTIFACTS = ROOT / "test-artifacts"
ADMIN, PASSWORD = "admin", "correct-horse-battery-staple"
TOKEN = "topology-test-token"

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


def _venv_path() -> str:
    return f"{Path(sys.executable).parent}:{os.environ['PATH']}"


@contextlib.contextmanager
def _process(cmd: list[str], env: dict, log: Path):
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
    root = tmp_path_factory.mktemp("topology")
    with contextlib.ExitStack() as stack:
        mlflow_db = stack.enter_context(postgres_database(admin))
        auth_db = stack.enter_context(postgres_database(admin))
        jobs_db = stack.enter_context(postgres_database(admin))
        address, ray_auth = stack.enter_context(ray_cluster(worker_cpus=[2], head_cpus=0))

        mlflow_port = free_port()
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        mlflow_env = base_env(
            PATH=_venv_path(),
            MLFLOW_AUTH_DATABASE_URI=auth_db,
            MLFLOW_AUTH_ADMIN_USERNAME=ADMIN,
            MLFLOW_AUTH_ADMIN_PASSWORD=PASSWORD,
            MLFLOW_FLASK_SERVER_SECRET_KEY="s" * 32,
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            MLFLOW_DISABLE_TELEMETRY="true",
        )
        mlflow = stack.enter_context(
            _process(
                [
                    str(BIN / "mlflow-serve"),
                    f"--backend-store-uri={mlflow_db}",
                    f"--artifacts-destination={root / 'mlartifacts'}",
                    "--host=127.0.0.1",
                    f"--port={mlflow_port}",
                    "--workers=1",
                    "--app-name=basic-auth",
                ],
                mlflow_env,
                root / "mlflow.log",
            )  # fmt: skip
        )
        _wait_healthy(mlflow_url, mlflow, 120, root / "mlflow.log")

        service_port = free_port()
        service_url = f"http://127.0.0.1:{service_port}"
        service_env = base_env(
            PATH=_venv_path(),
            RAY_ADDRESS=address,
            **ray_auth,
            MLFLOW_TRACKING_URI=mlflow_url,
            MLFLOW_TRACKING_USERNAME=ADMIN,
            MLFLOW_TRACKING_PASSWORD=PASSWORD,
            GOLDILOCKS_DATABASE_URL=jobs_db,
            GOLDILOCKS_API_TOKEN=TOKEN,
            GOLDILOCKS_DATA_DIR=str(root / "data"),
            GOLDILOCKS_EXECUTOR="ray",
            GOLDILOCKS_MLFLOW_UI_URL=mlflow_url,
        )
        service = stack.enter_context(
            _process(
                [str(BIN / "goldilocks-serve"), "--host", "127.0.0.1", "--port", str(service_port)],
                service_env,
                root / "service.log",
            )  # fmt: skip
        )
        _wait_http(f"{service_url}/healthz", service, root / "service.log")
        yield {"service": service_url, "mlflow": mlflow_url, "root": root}


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-4000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.5)
    raise AssertionError(f"{url} not up:\n{log.read_text()[-4000:]}")


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1400,1000", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    # Log in as the basic-auth admin: every request of the page carries the credentials.
    basic = base64.b64encode(f"{ADMIN}:{PASSWORD}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {basic}"}}
    )
    return driver


def _wait_for_text(driver, *texts: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(t in driver.page_source for t in texts):
            return
        time.sleep(0.5)
    raise AssertionError(f"page never showed {texts}")


def _wait_for_text_in_any_frame(driver, *texts: str, timeout: float = 90) -> None:
    """Like _wait_for_text, also looking inside iframes (the viewer may render files there)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pages = [driver.page_source]
        for frame in driver.find_elements(By.TAG_NAME, "iframe"):
            try:
                driver.switch_to.frame(frame)
                pages.append(driver.page_source)
            finally:
                driver.switch_to.default_content()
        if any(all(t in page for t in texts) for page in pages):
            return
        time.sleep(0.5)
    raise AssertionError(f"page never showed {texts}")


def test_sweep_over_http_lands_in_the_mlflow_server_and_its_ui(stack):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    spec = tiny_spec_dict(
        name="topology-sweep",
        experiment="goldilocks-topology",
        train={"steps": 20, "batch_size": 32, "eval_every": 10, "seeds": [0]},
        search={"learning_rate": {"min": 1e-3, "max": 1.0, "num": 3}, "optimizer": ["sgd", "adam"]},
    )
    assert httpx.post(f"{stack['service']}/sweeps", json=spec, timeout=30).status_code == 401
    created = httpx.post(f"{stack['service']}/sweeps", json=spec, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        sweep = httpx.get(
            f"{stack['service']}/sweeps/{sweep_id}", headers=headers, timeout=30
        ).json()
        if sweep["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1)
    assert sweep["status"] == "succeeded", sweep
    eid, parent_id = sweep["mlflow"]["experiment_id"], sweep["mlflow"]["parent_run_id"]
    assert sweep["mlflow"]["parent_run_url"].startswith(stack["mlflow"])

    # The runs are in the tracking server (read back through its basic-auth API).
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN, PASSWORD
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(stack["mlflow"])
        children = client.search_runs([eid], f"tags.mlflow.parentRunId = '{parent_id}'")
        assert len(children) == 6 and all(r.info.status == "FINISHED" for r in children)
        artifacts = [a.path for a in client.list_artifacts(parent_id, "plots")]
        assert "plots/goldilocks.png" in artifacts
        assert "verdict.md" in {a.path for a in client.list_artifacts(parent_id)}
    finally:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(key, None)

    ARTIFACTS.mkdir(exist_ok=True)
    driver = _browser()
    try:
        from selenium.webdriver.common.by import By

        driver.get(f"{stack['mlflow']}/#/experiments/{eid}/runs")
        _wait_for_text(driver, "topology-sweep")
        # Expand the parent run: its child runs (one per lane) appear beneath it.
        name = driver.find_element(By.XPATH, "//*[text()='topology-sweep']")
        row = name.find_element(By.XPATH, "./ancestor::*[@role='row'][1]")
        row.find_element(By.XPATH, ".//button").click()
        _wait_for_text(driver, "sgd-constant", "adam-constant")
        driver.save_screenshot(str(ARTIFACTS / "mlflow-ui-runs.png"))

        driver.get(
            f"{stack['mlflow']}/#/experiments/{eid}/runs/{parent_id}/artifacts/plots/goldilocks.png"
        )
        _wait_for_text(driver, "goldilocks.png", "training_curves.png")
        # The artifact viewer shows the PNG (as a blob URL): a large image on the page.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(img.size["width"] > 300 for img in driver.find_elements(By.TAG_NAME, "img")):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the Goldilocks plot did not render in the MLflow UI")
        driver.save_screenshot(str(ARTIFACTS / "mlflow-ui-goldilocks-plot.png"))

        # The verdict table, readable in the UI's artifact viewer (verdict.md on the parent):
        # picked in the artifact tree (a new hash URL alone does not re-render the viewer).
        driver.find_element(By.XPATH, "//*[text()='verdict.md']").click()
        try:
            _wait_for_text_in_any_frame(driver, "Goldilocks verdict", "min diverged")
        finally:
            driver.save_screenshot(str(ARTIFACTS / "mlflow-ui-verdict.png"))
    finally:
        driver.quit()
