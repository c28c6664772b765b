"""The printed MLflow link, opened in a real browser: `goldilocks run` into a SQLite store
prints the `mlflow ui` command and the runs-view link; the command is run as printed (on a
free loopback port) and headless Chromium opens the link. MLflow 3.17 opens an experiment on
its GenAI view unless the link asks for the model-training one: the page must show the runs
table, the sweep's parent run and its lanes. The screenshot is kept in the test's tmp dir.

Needs Debian's chromium and chromium-driver (.ci/run installs them); skipped without them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest
from conftest import tiny_spec_dict
from mlflow_server import _stop, _wait_healthy
from testlib import free_port
from typer.testing import CliRunner

from service.cli import app as cli_app
from sweeps.settings import get_settings
from sweeps.tracking.uri import LOCAL_UI

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("chromium") is None or shutil.which("chromedriver") is None,
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]


def _printed(out: str, label: str) -> str:
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith(label)]
    assert len(lines) == 1, f"no single '{label}' line in:\n{out}"
    return lines[0].removeprefix(label).split("   (")[0].strip()


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1400,1000", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def _wait_for(driver, *texts: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(t in driver.page_source for t in texts):
            return
        time.sleep(0.5)
    raise AssertionError(f"the page never showed {texts}; it is at {driver.current_url}")


def test_the_printed_link_opens_the_runs_table(tmp_path, monkeypatch):
    monkeypatch.delenv("GOLDILOCKS_MLFLOW_UI_URL", raising=False)
    get_settings.cache_clear()
    raw = tiny_spec_dict(name="ui-check", experiment="goldilocks-ui")
    raw["train"].update(steps=20, eval_every=10)
    raw["search"].update(learning_rate={"min": 1e-3, "max": 1.0, "num": 2}, optimizer=["adam"])
    spec = tmp_path / "ui-check.yaml"
    spec.write_text(__import__("json").dumps(raw))
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    result = CliRunner().invoke(
        cli_app,
        ["run", str(spec), "--out", str(tmp_path / "out"), "--executor", "inline",
         "--tracking-uri", uri],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.stdout
    command = _printed(out, "open the UI:")
    link = _printed(out, "runs:")
    assert command == f"mlflow ui --backend-store-uri {uri}"
    assert link.startswith(f"{LOCAL_UI}/#/experiments/") and "workflowType=machine_learning" in link

    # The command as printed, on a free port instead of 5000 (others may be using it).
    port = free_port()
    args = shlex.split(command)
    cmd = [sys.executable, "-m", *args, "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = tmp_path / "mlflow-ui.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    driver = None
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, 90, log)
        driver = _browser()
        driver.get(link.replace(LOCAL_UI, url))
        _wait_for(driver, "ui-check", "Run Name")  # the runs table, with the parent run
        from selenium.webdriver.common.by import By

        # Expand the parent run: its lanes (child runs) are listed beneath it.
        row = driver.find_element(By.XPATH, "//*[@role='row'][.//*[text()='ui-check']]")
        row.find_element(By.XPATH, ".//button").click()
        _wait_for(driver, "adam-constant-lr1.0e-03-s0", "adam-constant-lr1.0e+00-s0")
        shot = tmp_path / "mlflow-runs-view.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        # still the model-training view, on the runs table (not the GenAI overview)
        assert "/runs?" in driver.current_url and "workflowType=machine_learning" in (
            driver.current_url
        )
        print(f"screenshot: {shot}")
    finally:
        if driver is not None:
            driver.quit()
        _stop(proc)
