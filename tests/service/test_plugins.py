"""The service's trust model over real HTTP: `import:` only from the operator's plugin folders
(GOLDILOCKS_PLUGIN_PATH) or installed packages; data files uploaded (POST /datasets), validated
by loading, referenced by id; `goldilocks submit` uploads a spec's local data file.

Validation runs on a paused server (no drivers); two tiny sweeps (a plugin model on an uploaded
npz, and the CLI's csv) really run, inline, on a second one."""

from __future__ import annotations

import io
import json
import os
import textwrap

import httpx
import numpy as np
import pytest
import yaml
from svc_testlib import live_server, make_settings, paused_settings, service_spec, tracking_client
from typer.testing import CliRunner

from service.cli import app as cli_app
from service.submit import driver_spec

NET = textwrap.dedent(
    """\
    from flax import nnx


    class Net(nnx.Module):
        def __init__(self, *, n_features, n_outputs, rngs):
            self.l = nnx.Linear(n_features, n_outputs, rngs=rngs)

        def __call__(self, x):
            return self.l(x.reshape(x.shape[0], -1))
    """
)
UPLOAD_LIMIT = 256 * 1024  # the paused server's GOLDILOCKS_MAX_UPLOAD_BYTES


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Two plugin folders (nets.py in the first, extra/deep.py in the second) and a folder
    outside them with the same nets.py (and a link to it from inside)."""
    root = tmp_path_factory.mktemp("plugins")
    first, second, outside = root / "first", root / "second", root / "outside"
    for folder in (first, second / "extra", outside):
        folder.mkdir(parents=True)
    (first / "nets.py").write_text(NET)
    (second / "extra" / "deep.py").write_text(NET)
    (outside / "nets.py").write_text(NET)
    (outside / "other.py").write_text(NET)
    (first / "linked.py").symlink_to(outside / "nets.py")
    return {"first": first, "second": second, "outside": outside, "root": root}


def plugin_path(places) -> str:
    return os.pathsep.join(str(places[k]) for k in ("first", "second"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, places):
    settings = paused_settings(
        tmp_path_factory.mktemp("plugins-paused"),
        plugin_path=plugin_path(places),
        plugin_packages="*",  # any installed package: the checks after the allowlist
        max_upload_bytes=UPLOAD_LIMIT,
    )
    with live_server(settings) as s:
        yield s


@pytest.fixture
def api(server):
    with server.client() as c:
        yield c


def drain(api) -> None:
    for s in api.get("/sweeps", params={"status": "queued", "limit": 200}).json()["items"]:
        assert api.post(f"/sweeps/{s['id']}/cancel").status_code == 200


def digits_spec(name: str, data: dict, model: dict | None = None, **kwargs) -> dict:
    """3 lanes (adam x 3 LRs), 30 steps, the user's Net: a driver finishes in seconds."""
    model = model or {"import": "nets.py:Net"}
    return service_spec(name, steps=30, eval_every=10, data=data, model=model, **kwargs)


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def iris_npz() -> bytes:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return npz_bytes(x=x.astype(np.float32), y=y)


def stored(server) -> set[str]:
    """Everything in the datasets folder (uploads and what is half-received)."""
    root = server.settings.datasets_path
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def message(response: httpx.Response) -> str:
    return response.json()["detail"]["message"]


# --------------------------------------------------------------------------- imports


def test_a_plugin_file_is_accepted_and_stored_as_its_absolute_path(api, places):
    drain(api)
    r = api.post("/sweeps", json=digits_spec("plugin-ok", {"name": "digits"}))
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["model"]["import"] == f"{places['first'] / 'nets.py'}:Net"
    # searched in order: only the second folder has extra/deep.py
    raw = digits_spec("plugin-second", {"name": "digits"}, {"import": "extra/deep.py:Net"})
    r = api.post("/sweeps", json=raw)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["model"]["import"] == f"{places['second'] / 'extra/deep.py'}:Net"
    # an absolute path inside a folder is the same file (a stored spec submitted again)
    raw = digits_spec(
        "plugin-abs", {"name": "digits"}, {"import": r.json()["spec"]["model"]["import"]}
    )
    assert api.post("/sweeps", json=raw).status_code == 201
    drain(api)


def test_an_installed_package_may_be_named(api):
    model = {"import": "flax.nnx:Linear", "args": {"in_features": 64, "out_features": 10}}
    r = api.post("/sweeps", json=digits_spec("installed", {"name": "digits"}, model))
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["model"]["import"] == "flax.nnx:Linear"
    drain(api)


@pytest.mark.parametrize(
    ("field", "ref", "says"),
    [
        ("model.import", "outside", "points outside the service's plugin folders"),
        ("model.import", "../outside/nets.py:Net", "points outside the service's plugin folders"),
        ("model.import", "other.py:Net", "is not in the service's plugin folders"),
        ("model.import", "linked.py:Net", "points outside the service's plugin folders"),
        ("model.import", "obj:Net#1", "names an object handed to the Python API"),
        ("model.import", "models.nets:MLP", "neither an installed package nor in"),
        ("loss.import", "json:loads", "neither an installed package nor in"),
        ("loss.import", "pip._internal:main", "'_internal' is a private name"),
        ("data.import", "no_such_package_here:load", "no module 'no_such_package_here'"),
    ],
)
def test_code_from_elsewhere_is_422_naming_the_field_and_creates_nothing(
    api, places, field, ref, says
):
    if ref == "outside":  # the very same file, outside the plugin folders
        ref = f"{places['outside'] / 'nets.py'}:Net"
    raw = digits_spec("refused", {"name": "digits"})
    if field == "loss.import":
        raw["loss"] = {"import": ref}
    elif field == "data.import":
        raw["data"] = {"import": ref}
    else:
        raw["model"] = {"import": ref}
    before = api.get("/sweeps").json()["total"]
    r = api.post("/sweeps", json=raw)
    assert r.status_code == 422, r.text
    text = message(r)
    assert text.startswith(f"{field}: ") and says in text, text
    if "plugin folders" in says:
        assert "GOLDILOCKS_PLUGIN_PATH" in text
        assert "the service runs code only from where its operator put it" in text
    assert api.get("/sweeps").json()["total"] == before


def test_the_driver_checks_imports_again_against_the_plugin_path_of_now(tmp_path, places):
    """A sweep queued before the operator narrowed GOLDILOCKS_PLUGIN_PATH does not run code
    from outside it: driver_spec refuses it (the runner ends the sweep failed, saying why)."""
    spec = digits_spec("later", {"name": "digits"})
    spec["model"]["import"] = f"{places['first'] / 'nets.py'}:Net"
    wide = make_settings(tmp_path, plugin_path=str(places["first"]))
    assert driver_spec(spec, wide)["model"]["import"] == spec["model"]["import"]
    narrow = make_settings(tmp_path, plugin_path=str(places["second"]))
    with pytest.raises(ValueError, match="^model.import: .* points outside the service's plugin"):
        driver_spec(spec, narrow)
    with pytest.raises(ValueError, match="GOLDILOCKS_PLUGIN_PATH is not set"):
        driver_spec(spec, make_settings(tmp_path))


def test_plugin_packages_limits_the_installed_packages(tmp_path, places):
    from service.plugins import Refused, check_ref

    only_optax = make_settings(tmp_path, plugin_packages="optax")
    assert check_ref("loss.import", "optax:l2_loss", only_optax) == "optax:l2_loss"
    with pytest.raises(Refused, match="^model.import: package 'flax' is not one the service"):
        check_ref("model.import", "flax.nnx:Linear", only_optax)
    with pytest.raises(Refused, match="GOLDILOCKS_PLUGIN_PACKAGES: none"):
        check_ref("model.import", "flax.nnx:Linear", make_settings(tmp_path, plugin_packages=""))
    # the default: none (an installed package is not a plugin until the operator says so)
    with pytest.raises(Refused, match="GOLDILOCKS_PLUGIN_PACKAGES: none"):
        check_ref("model.import", "flax.nnx:Linear", make_settings(tmp_path))
    anything = make_settings(tmp_path, plugin_packages="*")
    assert check_ref("model.import", "flax.nnx:Linear", anything) == "flax.nnx:Linear"


def test_cli_submit_says_import_files_are_not_uploaded(server, tmp_path):
    (tmp_path / "mynet.py").write_text(NET)
    spec = tmp_path / "mine.yaml"
    spec.write_text(
        yaml.safe_dump(digits_spec("mine", {"name": "digits"}, {"import": "mynet.py:Net"}))
    )
    env = {"GOLDILOCKS_SERVER": server.url, "GOLDILOCKS_API_TOKEN": server.settings.token()}
    result = CliRunner(env=env).invoke(cli_app, ["submit", str(spec)])
    assert result.exit_code == 2, result.output
    err = " ".join(result.stderr.split())
    assert "note: model.import: mynet.py is not uploaded" in err, err
    assert "only from its own plugin folders (GOLDILOCKS_PLUGIN_PATH)" in err
    assert "error: model.import: 'mynet.py' is not in the service's plugin folders" in err


def test_cli_submit_no_upload_sends_the_path_for_the_servers_datasets_folder(server, tmp_path):
    (tmp_path / "local.csv").write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    spec = tmp_path / "local.yaml"
    spec.write_text(yaml.safe_dump(service_spec("local", data={"path": "local.csv"})))
    env = {"GOLDILOCKS_SERVER": server.url, "GOLDILOCKS_API_TOKEN": server.settings.token()}
    result = CliRunner(env=env).invoke(cli_app, ["submit", str(spec), "--no-upload"])
    assert result.exit_code == 2, result.output
    err = " ".join(result.stderr.split())
    assert "uploaded" not in err and "error: data.path: file not found" in err, err


# --------------------------------------------------------------------------- uploads


def test_upload_an_npz_then_read_it_list_it_and_upload_it_again(api, server):
    body = iris_npz()
    r = api.post("/datasets", params={"name": "iris.npz"}, content=body)
    assert r.status_code == 201, r.text
    info = r.json()
    assert len(info["id"]) == 32 and r.headers["location"] == f"/datasets/{info['id']}"
    assert (info["name"], info["kind"], info["bytes"], info["rows"]) == (
        "iris.npz",
        "arrays",
        len(body),
        150,
    )
    assert (info["task"], info["num_classes"], info["input_shape"]) == ("classification", 3, [4])
    assert api.get(info["url"]).json() == info
    assert info["id"] in [d["id"] for d in api.get("/datasets").json()["items"]]
    again = api.post("/datasets", params={"name": "copy.npz"}, content=body)
    assert again.status_code == 200 and again.json() == info  # the same file: the same dataset
    folder = server.settings.datasets_path / info["id"]
    assert [p.name for p in folder.iterdir()] == ["iris.npz"]
    assert api.get("/datasets/" + "0" * 32).status_code == 404
    # a spec names it by id, and keeps the id (the driver gets the file)
    r = api.post("/sweeps", json=digits_spec("by-id", {"dataset": info["id"]}))
    assert r.status_code == 201, r.text
    data = r.json()["spec"]["data"]
    assert data["dataset"] == info["id"] and data["path"] is None
    assert driver_spec(r.json()["spec"], server.settings)["data"]["path"] == str(
        folder / "iris.npz"
    )
    drain(api)


def test_a_text_corpus_upload_serves_a_text_spec(api):
    corpus = "the quick brown fox jumps over the lazy dog. " * 40
    r = api.post("/datasets", params={"name": "fox.txt"}, content=corpus.encode())
    assert r.status_code == 201, r.text
    info = r.json()
    assert (info["kind"], info["characters"], info["rows"]) == ("text", len(corpus), None)
    assert info["vocabulary_size"] == len(set(corpus))
    raw = service_spec(
        "corpus",
        steps=20,
        data={"dataset": info["id"], "block_size": 16},
        model={"name": "transformer", "d_model": 16, "n_layers": 1, "n_heads": 2},
    )
    r = api.post("/sweeps", json=raw)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["data"]["dataset"] == info["id"]
    assert r.json()["spec"]["data"]["block_size"] == 16
    drain(api)


@pytest.mark.parametrize(
    ("name", "body", "status", "says"),
    [
        ("bad.npz", b"not a zip file at all", 422, "body: bad.npz is not a usable arrays file"),
        ("pickled.npz", "pickle", 422, "Object arrays cannot be loaded when allow_pickle=False"),
        ("no-y.npz", "no-y", 422, "array 'y' not found"),
        ("t.csv", b"a,b\n1,2\n3,4\n", 422, "query.target: t.csv is not a usable table file"),
        ("bin.txt", b"abc\x00def" * 10, 422, "bin.txt is a binary file, not text"),
        ("nets.py", b"import os", 422, "query.name: 'nets.py': an upload is a data file"),
        ("../up.csv", b"y\n1\n", 422, "query.name: '../up.csv' is not a file name"),
        ("empty.csv", b"", 422, "body: the request body is empty"),
        ("big.npz", b"\0" * (UPLOAD_LIMIT + 1), 413, "larger than the limit of 262144 bytes"),
        ("chunked.txt", "chunked", 413, "(GOLDILOCKS_MAX_UPLOAD_BYTES)"),
    ],
)
def test_a_bad_or_oversized_upload_is_refused_and_nothing_is_kept(
    api, server, name, body, status, says
):
    if body == "pickle":
        body = npz_bytes(x=np.zeros((20, 2)), y=np.array([{"a": 1}] * 20, dtype=object))
    elif body == "no-y":
        body = npz_bytes(x=np.zeros((20, 2)), labels=np.zeros(20))
    elif body == "chunked":  # no Content-Length: counted as it arrives

        def body():
            for _ in range(UPLOAD_LIMIT // 4096 + 2):
                yield b"a" * 4096

        body = body()
    before = stored(server)
    r = api.post("/datasets", params={"name": name}, content=body)
    assert r.status_code == status, r.text
    assert says in message(r), message(r)
    assert stored(server) - before <= {".incoming"}, stored(server) - before
    assert not list((server.settings.datasets_path / ".incoming").glob("*/*"))


def test_uploads_need_the_token_and_a_file_not_a_form(server):
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert (
            anonymous.post("/datasets", params={"name": "a.csv"}, content=b"y\n1\n").status_code
            == 401
        )
        assert anonymous.get("/datasets").status_code == 401
    with server.client() as api:
        r = api.post("/datasets", params={"name": "a.csv"}, files={"file": ("a.csv", b"y\n1\n")})
        assert r.status_code == 415 and "not a multipart form" in message(r)


def test_specs_name_known_datasets_and_data_files_stay_in_the_datasets_folder(api):
    r = api.post("/sweeps", json=digits_spec("unknown", {"dataset": "f" * 32}))
    assert r.status_code == 422 and message(r).startswith("data.dataset: no uploaded dataset")
    r = api.post(
        "/sweeps", json=digits_spec("escape", {"text": "../../etc/hostname", "block_size": 4})
    )
    assert r.status_code == 422, r.text
    assert message(r).startswith(
        "data.text: '../../etc/hostname' is outside the service's datasets"
    )


# --------------------------------------------------------------------------- real sweeps


@pytest.fixture(scope="module")
def running(tmp_path_factory, places):
    tracking_client()  # MLflow's store migrated before the first driver
    settings = make_settings(
        tmp_path_factory.mktemp("plugins-run"), plugin_path=plugin_path(places)
    )
    with live_server(settings) as s:
        yield s


def test_a_plugin_model_sweeps_an_uploaded_npz(running):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    with running.client() as api:
        r = api.post(
            "/datasets",
            params={"name": "digits.npz"},
            content=npz_bytes(x=x.astype(np.float32), y=y),
        )
        assert r.status_code == 201, r.text
        dataset = r.json()["id"]
        r = api.post("/sweeps", json=digits_spec("plugin-sweep", {"dataset": dataset}))
        assert r.status_code == 201, r.text
        sweep = running.wait_status(r.json()["id"])
        assert sweep["status"] == "succeeded", sweep["error"]
        report = api.get(sweep["report_url"]).json()
    assert len(report["lanes"]) == 3 and report["winner"] is not None
    ran = json.loads((running.settings.sweeps_dir / sweep["id"] / "spec.json").read_text())
    assert ran["model"]["import"].endswith("/first/nets.py:Net")
    assert ran["data"]["path"] == str(running.settings.datasets_path / dataset / "digits.npz")


def test_cli_submit_uploads_the_local_csv_and_the_sweep_runs(running, tmp_path):
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    rows = "".join(f"{','.join(map(str, r))},{t}\n" for r, t in zip(x, y, strict=True))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "my iris.csv").write_text("a,b,c,d,species\n" + rows)
    spec = tmp_path / "iris.yaml"
    raw = service_spec("cli-csv", data={"path": "data/my iris.csv", "target": "species"})
    spec.write_text(yaml.safe_dump(raw))
    result = CliRunner(env={"GOLDILOCKS_SERVER": running.url}).invoke(
        cli_app, ["submit", str(spec), "--wait", "--poll", "0.5"]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    err = " ".join(result.stderr.split())
    assert "uploaded data.path" in err and "my iris.csv" in err and "as dataset" in err, err
    sweep_id = result.stdout.split()[1]
    sweep = running.sweep(sweep_id)
    assert sweep["status"] == "succeeded"
    dataset = sweep["spec"]["data"]["dataset"]
    assert dataset in err and sweep["spec"]["data"]["target"] == "species"
    assert running.client().get(f"/datasets/{dataset}").json()["name"] == "my_iris.csv"
