"""The `goldilocks` command line: exit codes, messages, and the files a run writes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_spec_dict
from typer.testing import CliRunner

from sweeps.cli import app

STATUSES = {"converged", "too_slow", "stagnated", "pruned", "too_high", "unstable", "diverged"}
GROUP_KEYS = {
    "optimizer",
    "schedule",
    "loss",
    "best_lr",
    "zone",
    "max_stable_lr",
    "min_diverged_lr",
    "edge",
    "best_val_loss",
    "best_val_metric",
}
LANE_KEYS = {
    "run_id",
    "trial_id",
    "optimizer",
    "schedule",
    "learning_rate",
    "seed",
    "optimizer_args",
    "schedule_args",
    "status",
    "final_train_loss",
    "best_val_loss",
    "val_metric",
    "diverged_at_step",
}


def cli_spec_dict(**overrides) -> dict:
    """The brief's tiny sweep: iris, mlp [8], 30 steps, 5 LRs x [sgd, adam] = 10 lanes."""
    raw = tiny_spec_dict(
        **{"name": "cli-tiny", "model": {"name": "mlp", "hidden": [8]}, **overrides}
    )
    raw["train"].update(steps=30, eval_every=10)
    raw["search"]["learning_rate"] = {"min": 1e-3, "max": 10.0, "num": 5, "scale": "log"}
    return raw


def write_spec(folder: Path, raw: dict | str, name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
    return path


def one_line(text: str) -> str:
    return " ".join(text.split())


def _no_constants(name: str):
    raise ValueError(f"report.json holds {name}: not strict JSON")


# ---------------------------------------------------------------- one shared run


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-run")
    spec = write_spec(folder, cli_spec_dict())
    out = folder / "out"
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--executor", "inline"])
    return result, out


@pytest.fixture(scope="module")
def report(sweep):
    result, out = sweep
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text(), parse_constant=_no_constants)


def test_run_exits_0_and_prints_the_verdict(sweep, report):
    result, out = sweep
    assert result.exit_code == 0, result.output
    output = result.stdout
    assert "cli-tiny: 10 lanes, 2 populations, executor inline" in output
    assert "Goldilocks verdict — cli-tiny" in output
    table_rows = [line for line in output.splitlines() if "constant" in line]
    assert any("sgd" in row for row in table_rows) and any("adam" in row for row in table_rows)
    winner_lines = [line for line in output.splitlines() if line.startswith("winner:")]
    assert len(winner_lines) == 1
    w = report["winner"]
    assert f"{w['optimizer']} · {w['schedule']} at LR {w['learning_rate']:.3g}" in winner_lines[0]
    assert str(out / "report.json") in one_line(output)


def test_report_json_follows_the_contract(report):
    assert {"name", "sweep_id", "executor", "mlflow", "groups", "lanes", "winner", "timing"} <= set(
        report
    )
    assert report["name"] == "cli-tiny"
    assert report["sweep_id"].startswith("cli-tiny-")
    assert report["executor"] == "inline"
    mlflow = report["mlflow"]
    assert mlflow is None or {"tracking_uri", "experiment_id", "parent_run_id"} <= set(mlflow)

    groups = report["groups"]
    assert sorted(g["optimizer"] for g in groups) == ["adam", "sgd"]
    lrs = sorted({lane["learning_rate"] for lane in report["lanes"]})
    assert len(lrs) == 5 and math.isclose(lrs[0], 1e-3) and math.isclose(lrs[-1], 10.0)
    for g in groups:
        assert set(g) >= GROUP_KEYS, GROUP_KEYS - set(g)
        assert (g["schedule"], g["loss"]) == ("constant", "cross_entropy")
        assert g["edge"] in (None, "low", "high")
        zone = g["zone"]
        if zone is not None:
            assert set(zone) == {"low", "high"} and zone["low"] <= zone["high"]
        if g["best_lr"] is not None:
            assert g["best_lr"] in lrs
        for key in ("max_stable_lr", "min_diverged_lr"):
            assert g[key] is None or g[key] in lrs

    lanes = report["lanes"]
    assert len(lanes) == 10
    assert sorted((lane["optimizer"], lane["learning_rate"]) for lane in lanes) == sorted(
        (opt, lr) for opt in ("sgd", "adam") for lr in lrs
    )
    for lane in lanes:
        assert set(lane) >= LANE_KEYS, LANE_KEYS - set(lane)
        assert lane["status"] in STATUSES
        assert lane["seed"] == 0 and lane["schedule"] == "constant"
        assert isinstance(lane["optimizer_args"], dict) and lane["schedule_args"] == {}
        step = lane["diverged_at_step"]
        assert (step is None) == (lane["status"] != "diverged"), lane
        if step is not None:
            assert 0 <= step <= 30
    # no MLflow in an inline run without tracking: run_id is null; trial_id names the population
    run_ids = [lane["run_id"] for lane in lanes]
    assert run_ids == [None] * 10 or len(set(run_ids)) == 10
    assert {lane["trial_id"] for lane in lanes if lane["optimizer"] == "sgd"} == {
        "p000-sgd-constant"
    }
    assert {lane["trial_id"] for lane in lanes if lane["optimizer"] == "adam"} == {
        "p001-adam-constant"
    }

    winner = report["winner"]
    assert winner is not None and set(winner) >= LANE_KEYS
    assert winner["status"] != "diverged"
    # the best group's lane at that group's best LR (groups are listed best first)
    best = groups[0]
    assert (winner["optimizer"], winner["learning_rate"]) == (best["optimizer"], best["best_lr"])
    assert any(
        lane["optimizer"] == winner["optimizer"]
        and lane["learning_rate"] == winner["learning_rate"]
        and lane["best_val_loss"] == winner["best_val_loss"]
        for lane in lanes
    )
    assert all(
        g["best_val_loss"] is None or g["best_val_loss"] >= best["best_val_loss"] for g in groups
    )

    timing = report["timing"]
    assert {"wall_s", "compile_s", "train_s", "log_s"} <= set(timing)
    seconds = {k: v for k, v in timing.items() if k.endswith("_s")}
    assert all(isinstance(v, int | float) and v >= 0 for v in seconds.values())
    # the lanes per compiled slice each population trained at
    assert set(timing["lane_width"]) == {lane["trial_id"] for lane in lanes}
    assert all(isinstance(w, int) and w >= 1 for w in timing["lane_width"].values())
    assert timing["wall_s"] > 0


def test_report_json_is_strict_json(sweep):
    _, out = sweep
    text = (out / "report.json").read_text()
    for token in ("NaN", "Infinity"):
        assert token not in text
    json.loads(text, parse_constant=_no_constants)


def test_run_writes_plots(sweep):
    _, out = sweep
    pngs = sorted((out / "plots").glob("*.png"))
    assert pngs, "no plots written"
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


# ---------------------------------------------------------------- validate


def test_validate_prints_the_lane_count(tmp_path):
    spec = write_spec(tmp_path, cli_spec_dict())
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert "ok cli-tiny: 10 lanes in 2 populations" in result.stdout
    assert "120 train / 30 validation rows" in result.stdout
    assert list(tmp_path.iterdir()) == [spec]  # validate writes nothing


def test_validate_counts_the_points_a_tpe_search_will_make(tmp_path):
    raw = cli_spec_dict()
    raw["search"].update(method="tpe", num_samples=6)
    raw["train"]["seeds"] = [0, 1]
    result = CliRunner().invoke(app, ["validate", str(write_spec(tmp_path, raw))])
    assert result.exit_code == 0, result.output
    assert "ok cli-tiny: tpe: 6 points x 2 seeds" in result.stdout


# ---------------------------------------------------------------- bad input: exit 2


def _malformed(folder: Path) -> list[str]:
    text = "name: cli-tiny\ndata: {name: iris\nmodel: {name: mlp}\n"
    return [str(write_spec(folder, text))]


def _unknown_optimizer(folder: Path) -> list[str]:
    raw = cli_spec_dict()
    raw["search"]["optimizer"] = ["sgd", "adamx"]
    return [str(write_spec(folder, raw))]


def _misspelled_key(folder: Path) -> list[str]:
    raw = cli_spec_dict()
    raw["search"]["learnig_rate"] = raw["search"].pop("learning_rate")
    return [str(write_spec(folder, raw))]


def _markup_like_key(folder: Path) -> list[str]:
    raw = cli_spec_dict()
    raw["[/bold]"] = 1  # echoed back: must not be read as rich markup
    return [str(write_spec(folder, raw))]


def _binary_spec(folder: Path) -> list[str]:
    path = folder / "sweep.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    return [str(path)]


def _latin1_spec(folder: Path) -> list[str]:
    path = folder / "sweep.yaml"
    path.write_bytes(
        yaml.safe_dump(cli_spec_dict(name="caf\xe9"), allow_unicode=True).encode("latin-1")
    )
    return [str(path)]


def _duplicate_key(folder: Path) -> list[str]:
    text = yaml.safe_dump(cli_spec_dict(), sort_keys=False) + "loss: mse\n"
    return [str(write_spec(folder, text))]


def _quoted_number(folder: Path) -> list[str]:
    raw = cli_spec_dict()
    raw["train"]["steps"] = "30"
    return [str(write_spec(folder, raw))]


def _missing_file(folder: Path) -> list[str]:
    return [str(folder / "nope.yaml")]


def _batch_above_rows(folder: Path) -> list[str]:
    raw = cli_spec_dict()
    raw["train"]["batch_size"] = 500
    return [str(write_spec(folder, raw))]


def _cnn_on_tabular(folder: Path) -> list[str]:
    return [str(write_spec(folder, cli_spec_dict(model={"name": "cnn"})))]


def _bogus_executor(folder: Path) -> list[str]:
    return [str(write_spec(folder, cli_spec_dict())), "--executor", "bogus"]


BAD_INPUTS = [
    pytest.param(_malformed, ["spec: malformed YAML at line 3"], id="malformed-yaml"),
    pytest.param(
        _unknown_optimizer,
        # the whole line, unwrapped, so it greps well in CI logs
        [
            "search.optimizer: unknown optimizer 'adamx'; choose one of: sgd, momentum, nesterov,"
            " adam, adamw, rmsprop, adagrad, lion, schedule_free_adamw, prodigy, dadapt_adamw\n"
        ],
        id="unknown-optimizer",
    ),
    pytest.param(
        _misspelled_key, ["search.learnig_rate: unknown key (misspelled?)"], id="misspelled-key"
    ),
    pytest.param(_markup_like_key, ["[/bold]: unknown key"], id="markup-like-key"),
    pytest.param(_missing_file, ["spec: cannot read", "nope.yaml"], id="missing-spec-file"),
    pytest.param(_binary_spec, ["sweep.yaml is a binary file, not YAML or JSON"], id="binary"),
    pytest.param(_latin1_spec, ["sweep.yaml is not UTF-8 text (byte"], id="not-utf8"),
    pytest.param(_duplicate_key, ["spec: duplicate key 'loss' at line"], id="duplicate-key"),
    pytest.param(
        _quoted_number,
        ["train.steps: Input should be a valid integer, not the string '30'"],
        id="quoted-number",
    ),
    pytest.param(
        _batch_above_rows,
        ["train.batch_size: 500 is larger than the 120 training rows"],
        id="batch-size-above-rows",
    ),
    pytest.param(_cnn_on_tabular, ["model.name: cnn needs image-shaped inputs"], id="cnn-on-iris"),
]


@pytest.mark.parametrize(
    ("make_args", "phrases"),
    [
        *BAD_INPUTS,
        pytest.param(
            _bogus_executor, ["--executor: unknown executor 'bogus'"], id="bogus-executor"
        ),
    ],
)
def test_run_bad_input_exits_2_and_writes_nothing(tmp_path, make_args, phrases):
    out = tmp_path / "out" / "nested"
    args = make_args(tmp_path)
    before = sorted(tmp_path.iterdir())
    result = CliRunner().invoke(app, ["run", *args, "--out", str(out)])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.stderr.startswith("error:"), result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize(("make_args", "phrases"), BAD_INPUTS)
def test_validate_bad_input_exits_2(tmp_path, make_args, phrases):
    result = CliRunner().invoke(app, ["validate", *make_args(tmp_path)])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    assert "ok " not in result.stdout


# ---------------------------------------------------------------- the console script


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "goldilocks"
    assert script.exists(), f"{script} missing: is the package installed in the venv?"
    proc = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    for command in ("validate", "run"):
        assert command in proc.stdout


def test_the_console_script_leaves_with_the_commands_status_and_everything_written(tmp_path):
    """The console script skips the interpreter's teardown at exit (service/cli.py `main`):
    the status, the printed verdict, the files and the MLflow runs are all still there."""
    from mlflow.tracking import MlflowClient

    script = Path(sys.executable).parent / "goldilocks"
    spec = write_spec(tmp_path, cli_spec_dict())
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "out"
    args = ["run", str(spec), "--out", str(out), "--executor", "inline", "--tracking-uri", uri]
    proc = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "winner" in proc.stdout.lower() and str(out / "report.json") in one_line(proc.stdout)
    report = json.loads((out / "report.json").read_text())
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("goldilocks-tests").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * (len(report["lanes"]) + 1)
    bad = subprocess.run(
        [str(script), "validate", str(tmp_path / "missing.yaml")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "missing.yaml" in one_line(bad.stderr), bad.stderr


def test_run_with_an_unreachable_tracking_server_fails_fast_and_truthfully(tmp_path):
    from testlib import free_port

    spec = write_spec(tmp_path, cli_spec_dict())
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    out = tmp_path / "out"
    args = ["run", str(spec), "--out", str(out), "--executor", "inline", "--tracking-uri", uri]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert f"MLflow tracking server {uri} is unreachable" in one_line(result.stderr)
    state = json.loads((out / "sweep.json").read_text())
    assert state["status"] == "failed" and uri in state["error"]
    assert not (out / "report.json").exists()
