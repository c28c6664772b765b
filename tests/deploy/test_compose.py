"""The deployment in docker/: the compose stack validates and is wired as the docs say, the image
is built the way the issue asks, every command the containers run exists in the project, the
KubeRay manifest is well formed, and .env.example documents every setting.

`docker-compose config` needs no Docker engine (Debian's `docker-compose` package; CI installs
it). Nothing here builds an image or starts a container.
"""

from __future__ import annotations

import configparser
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
GPU_COMPOSE = DOCKER / "compose.gpu.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
SCRIPTS = DOCKER / "bin"  # copied onto the image's PATH
KUBERAY = DOCKER / "kuberay-raycluster.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
VENV_BIN = Path(sys.executable).parent  # the project's console scripts: goldilocks, ray, mlflow

SERVICES = {"postgres", "mlflow", "ray-head", "ray-worker", "goldilocks"}
# Test values for the secrets the stack requires (compose has no default for any of them).
SECRETS = {
    "POSTGRES_PASSWORD": "pgpass0123456789",
    "MLFLOW_ADMIN_PASSWORD": "mlflow-admin-pass-0123",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret-key-0123",
    "GOLDILOCKS_API_TOKEN": "api-token-0123456789",
    "RAY_AUTH_TOKEN": "ray-token-0123456789",
}
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


# ---------------------------------------------------------------- helpers


def _strings(node) -> list[str]:
    """Every string (keys and values) in a parsed YAML tree."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(k) + _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def compose_vars(path: Path) -> set[str]:
    """The ${VAR} names a compose file interpolates ($$ is a literal dollar)."""
    raw = yaml.safe_load(path.read_text())
    return {m for s in _strings(raw) for m in VAR_RE.findall(s.replace("$$", ""))}


def required_vars(path: Path) -> set[str]:
    """Variables used as ${VAR:?message} or ${VAR?message}: no default."""
    raw = yaml.safe_load(path.read_text())
    pattern = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?")
    return {m for s in _strings(raw) for m in pattern.findall(s)}


def run_compose_config(env: dict[str, str], tmp_path: Path, *files: Path):
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "docker-compose is not installed: apt-get install docker-compose "
            "(Debian's package validates compose files without a Docker engine; CI installs it)"
        )
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    referenced = set().union(*(compose_vars(f) for f in files))
    # The caller's shell must not fill in what the test leaves out, nor pick other files.
    proc_env = {
        k: v
        for k, v in os.environ.items()
        if k not in referenced and not k.startswith(("COMPOSE_", "DOCKER_"))
    }
    cmd = [binary, "--env-file", str(env_file)]
    for f in files:
        cmd += ["-f", str(f)]
    return subprocess.run(
        [*cmd, "config"], cwd=ROOT, env=proc_env, capture_output=True, text=True, timeout=120
    )


def tokens(command) -> list[str]:
    """A compose command as a flat token list, `--flag=value` split in two."""
    parts = command.split() if isinstance(command, str) else list(command)
    out: list[str] = []
    for part in parts:
        if part.startswith("--") and "=" in part:
            out += part.split("=", 1)
        else:
            out.append(part)
    return out


def flag(command, name: str) -> str:
    toks = tokens(command)
    assert name in toks, f"{name} missing from {command}"
    return toks[toks.index(name) + 1]


def container_ports(service: dict) -> set[int]:
    """Container ports a service publishes (short or long syntax, as either compose prints)."""
    targets = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            targets.add(int(port["target"]))
        else:
            targets.add(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return targets


def named_mounts(service: dict) -> dict[str, str]:
    """container path -> named volume, for the service's volume mounts."""
    mounts = {}
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            if vol.get("type", "volume") == "volume":
                mounts[vol["target"]] = vol["source"]
        else:
            source, target = str(vol).split(":")[:2]
            if not source.startswith((".", "/")):
                mounts[target] = source
    return mounts


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> dict:
    """`docker-compose config` of docker/compose.yaml with the test secrets, parsed."""
    result = run_compose_config(SECRETS, tmp_path_factory.mktemp("compose"), COMPOSE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


# ---------------------------------------------------------------- the compose stack


def test_the_five_services_and_only_two_published_ports(stack):
    services = stack["services"]
    assert set(services) == SERVICES
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"goldilocks", "mlflow"}
    assert container_ports(services["goldilocks"]) == {8000}
    assert container_ports(services["mlflow"]) == {5000}


def test_service_is_wired_to_ray_mlflow_and_postgres(stack):
    env = env_of(stack["services"]["goldilocks"])
    assert env["RAY_ADDRESS"].split(":")[0] == "ray-head"
    assert urlsplit(env["MLFLOW_TRACKING_URI"]).hostname == "mlflow"
    db = urlsplit(env["GOLDILOCKS_DATABASE_URL"])
    assert db.scheme.startswith("postgresql") and db.hostname == "postgres"
    assert db.password == SECRETS["POSTGRES_PASSWORD"]
    assert env["GOLDILOCKS_API_TOKEN"] == SECRETS["GOLDILOCKS_API_TOKEN"]
    assert env["GOLDILOCKS_EXECUTOR"] == "ray"
    # it logs to the basic-auth server as the admin the mlflow service creates
    mlflow_env = env_of(stack["services"]["mlflow"])
    assert env["MLFLOW_TRACKING_USERNAME"] == mlflow_env["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert env["MLFLOW_TRACKING_PASSWORD"] == SECRETS["MLFLOW_ADMIN_PASSWORD"]


def test_start_order_waits_for_health(stack):
    services = stack["services"]

    def conditions(name: str) -> dict[str, str]:
        deps = services[name].get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on without conditions"
        return {dep: spec.get("condition") for dep, spec in deps.items()}

    healthy = "service_healthy"
    assert conditions("goldilocks") == {"postgres": healthy, "mlflow": healthy, "ray-head": healthy}
    assert conditions("mlflow") == {"postgres": healthy}
    assert conditions("ray-worker") == {"ray-head": healthy}
    for name in ("postgres", "mlflow", "ray-head", "ray-worker", "goldilocks"):
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"


def test_mlflow_server_uses_postgres_served_artifacts_and_basic_auth(stack):
    mlflow = stack["services"]["mlflow"]
    cmd = mlflow["command"]
    assert flag(cmd, "--app-name") == "basic-auth"
    backend = urlsplit(flag(cmd, "--backend-store-uri"))
    assert backend.scheme.startswith("postgresql") and backend.hostname == "postgres"
    assert backend.password is None  # the password travels in PGPASSWORD, not on a command line
    assert "--serve-artifacts" in tokens(cmd)
    artifacts = flag(cmd, "--artifacts-destination")
    assert artifacts in named_mounts(mlflow), "the artifact root is not on a volume"
    env = env_of(mlflow)
    assert env["PGPASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == SECRETS["MLFLOW_ADMIN_PASSWORD"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == SECRETS["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert urlsplit(env["MLFLOW_AUTH_DATABASE_URI"]).hostname == "postgres"
    # the service reaches it as mlflow:5000: that Host header must pass the DNS-rebinding check
    assert "mlflow:5000" in flag(cmd, "--allowed-hosts").split(",")


def test_ray_nodes_share_token_and_data_volume_and_workers_scale(stack):
    services = stack["services"]
    worker = services["ray-worker"]
    assert "container_name" not in worker and not worker.get("ports")
    assert flag(worker["command"], "--address") == "ray-head:6379"
    assert "--head" in tokens(services["ray-head"]["command"])
    assert flag(services["ray-head"]["command"], "--port") == "6379"
    data_dirs = set()
    for name in ("ray-head", "ray-worker", "goldilocks"):
        env = env_of(services[name])
        assert env["RAY_AUTH_MODE"] == "token"
        assert env["RAY_AUTH_TOKEN"] == SECRETS["RAY_AUTH_TOKEN"]
        data_dir = env["GOLDILOCKS_DATA_DIR"]
        data_dirs.add((data_dir, named_mounts(services[name]).get(data_dir)))
    # one named volume, at the same path everywhere (Ray Tune's storage_path lives under it)
    assert len(data_dirs) == 1 and None not in data_dirs.pop()


def test_volumes_for_postgres_artifacts_and_shared_data(stack):
    services = stack["services"]
    pg = named_mounts(services["postgres"])
    artifacts = named_mounts(services["mlflow"])
    data = named_mounts(services["goldilocks"])
    assert "/var/lib/postgresql/data" in pg
    volumes = {pg["/var/lib/postgresql/data"], *artifacts.values(), *data.values()}
    assert len(volumes) == 3
    assert volumes <= set(stack["volumes"])


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_compose_refuses_to_run_without_each_secret(secret, tmp_path):
    env = {k: v for k, v in SECRETS.items() if k != secret}
    result = run_compose_config(env, tmp_path, COMPOSE)
    assert result.returncode != 0
    assert secret in result.stderr


def test_no_default_passwords_every_secret_is_required():
    assert required_vars(COMPOSE) == set(SECRETS)
    # ... at every use: one ${SECRET:-default} would start a stack with a known password
    use = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+]|\})")
    for path in (COMPOSE, GPU_COMPOSE):
        for text in _strings(yaml.safe_load(path.read_text())):
            for name, operator in use.findall(text.replace("$$", "")):
                if name in SECRETS:
                    assert operator in (":?", "?"), f"{path.name}: ${{{name}{operator}...}}"


def test_env_example_as_shipped_is_refused(tmp_path):
    """Copying .env.example without filling in the secrets must not start a stack."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if k not in compose_vars(COMPOSE)}
    result = subprocess.run(
        [binary, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert any(name in result.stderr for name in SECRETS)


def test_gpu_override_adds_a_gpu_worker(tmp_path):
    result = run_compose_config(SECRETS, tmp_path, COMPOSE, GPU_COMPOSE)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == SERVICES | {"ray-gpu-worker"}
    gpu = services["ray-gpu-worker"]
    assert gpu["build"]["args"]["JAX_EXTRA"].startswith("cuda")
    assert flag(gpu["command"], "--address") == "ray-head:6379"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert not gpu.get("ports") and "container_name" not in gpu
    assert env_of(gpu)["RAY_AUTH_TOKEN"] == SECRETS["RAY_AUTH_TOKEN"]


# ---------------------------------------------------------------- the image


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions (KEYWORD, arguments) per build stage, comments and continuations joined."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), args.strip()))
    return stages


def copy_sources(args: str) -> list[str]:
    """The source paths of a COPY (no --flags, no destination)."""
    return [a for a in args.split() if not a.startswith("--")][:-1]


def test_dockerfile_is_multi_stage_with_a_non_root_final_stage():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    users = [args for kw, args in final if kw == "USER"]
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    # the final stage takes the built environment from the builder, not a compiler
    assert any(kw == "COPY" and "--from=" in args for kw, args in final)


def test_no_build_tools_in_the_final_stage():
    final = " ".join(args for _, args in dockerfile_stages()[-1])
    for tool in ("build-essential", "gcc", "g++", "clang", " make", "uv pip install"):
        assert tool not in final, f"{tool!r} in the final stage"


def test_dependencies_are_installed_before_sources_are_copied():
    builder = dockerfile_stages()[0]
    sources = {"sweeps", "models", "service"}

    def copies_sources(args: str) -> bool:
        return bool({s.rstrip("/") or "/" for s in copy_sources(args)} & (sources | {"."}))

    deps = next(
        i
        for i, (kw, args) in enumerate(builder)
        if kw == "RUN"
        and "constraints.txt" in args
        and "install" in args
        and "--no-deps" not in args
    )
    first_source = next(
        i for i, (kw, args) in enumerate(builder) if kw == "COPY" and copies_sources(args)
    )
    assert deps < first_source
    for kw, args in builder[:deps]:
        if kw == "COPY":
            assert set(copy_sources(args)) <= {"pyproject.toml", "constraints.txt"}, args


def test_image_copies_every_package_the_project_installs():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    if isinstance(packages, dict):  # packages.find: include patterns such as "sweeps*"
        packages = [pattern.rstrip("*") for pattern in packages["find"]["include"]]
    copied = {
        src.rstrip("/")
        for kw, args in dockerfile_stages()[0]
        if kw == "COPY"
        for src in copy_sources(args)
    }
    for package in {p.split(".")[0] for p in packages}:
        assert package in copied or "." in copied, f"{package}/ is not copied"


def test_image_install_includes_every_subpackage_and_data_file():
    """The image installs the project as a wheel, not editable: a package folder that
    pyproject's explicit `packages` list leaves out (or a non-Python file that no
    `package-data` pattern names) is missing there, though it works in a checkout."""
    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = setuptools_cfg.get("packages")
    if isinstance(packages, dict):  # packages.find: what setuptools will discover (namespaces on)
        from setuptools import find_namespace_packages

        packages = find_namespace_packages(str(ROOT), include=packages["find"]["include"])
    package_data = setuptools_cfg.get("package-data", {})
    missing = []
    for top in {p.split(".")[0] for p in packages}:
        for path in sorted((ROOT / top).rglob("*")):
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            if path.is_dir() and any(path.glob("*.py")):
                dotted = ".".join(path.relative_to(ROOT).parts)
                if dotted not in packages:
                    missing.append(f"package {dotted}")
            elif path.is_file() and path.suffix != ".py":
                package = ".".join(path.parent.relative_to(ROOT).parts)
                patterns = package_data.get(package, []) + package_data.get("*", [])
                if not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
                    missing.append(f"data file {path.relative_to(ROOT)}")
    assert not missing, f"pyproject.toml [tool.setuptools] does not install: {missing}"


def test_gpu_variant_is_a_build_argument():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG JAX_EXTRA", text, re.M)
    assert "jax[$JAX_EXTRA]" in text or "jax[${JAX_EXTRA}]" in text


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("path", [".venv", ".git", "mlruns", "mlflow.db", ".env"])
def test_dockerignore_keeps_local_state_and_secrets_out(path):
    patterns = dockerignore_patterns()
    excluded = any(fnmatch.fnmatch(path, p.lstrip("/")) for p in patterns if p[0] != "!")
    assert excluded, f"{path} would be sent to the build context"


def test_dockerignore_keeps_what_the_image_needs():
    patterns = dockerignore_patterns()
    needed = ["pyproject.toml", "constraints.txt", "sweeps", "models", "service", "docker/bin"]
    for path in needed:
        hits = [p for p in patterns if p[0] != "!" and fnmatch.fnmatch(path, p.lstrip("/"))]
        assert not hits, f"{path} excluded by {hits}"


# ---------------------------------------------------------------- entry commands


def goldilocks_image_services() -> dict[str, dict]:
    """Services (of both compose files, uninterpolated) that run the project's image."""
    services = {}
    for path in (COMPOSE, GPU_COMPOSE):
        for name, svc in yaml.safe_load(path.read_text())["services"].items():
            if "build" in svc:
                services[name] = svc
    return services


def resolve(program: str) -> Path:
    """Where a container's command comes from: the project's venv, or a script in docker/bin."""
    for candidate in (SCRIPTS / program, VENV_BIN / program):
        if candidate.is_file():
            return candidate
    raise AssertionError(f"{program}: neither docker/bin/{program} nor a project console script")


def test_every_container_command_exists_in_the_project():
    services = goldilocks_image_services()
    assert {"mlflow", "ray-head", "ray-worker", "goldilocks", "ray-gpu-worker"} <= set(services)
    for name, svc in services.items():
        commands = [tokens(svc["command"])]
        test = svc.get("healthcheck", {}).get("test")
        if test:
            commands.append(test[1:] if test[0] in ("CMD", "CMD-SHELL") else test)
        for command in commands:
            path = resolve(command[0])
            assert os.access(path, os.X_OK), f"{name}: {path} is not executable"


def test_dockerfile_puts_the_scripts_and_the_venv_on_path():
    final = dockerfile_stages()[-1]
    copy = next(args for kw, args in final if kw == "COPY" and "docker/bin" in args)
    destination = copy.split()[-1].rstrip("/")
    env = " ".join(args for kw, args in final if kw == "ENV")
    path = re.search(r"PATH=(\S+)", env).group(1).split(":")
    assert destination in path and "/opt/venv/bin" in path


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.iterdir()))
def test_scripts_are_executable_posix_shell(script):
    path = SCRIPTS / script
    assert os.access(path, os.X_OK)
    assert path.read_text().startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n", str(path)], check=True)


def run_help(*argv: str) -> str:
    result = subprocess.run(
        [str(VENV_BIN / argv[0]), *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "200"},
    )
    assert result.returncode == 0, f"{' '.join(argv)} --help: {result.stderr[-2000:]}"
    return result.stdout


def has_option(help_text: str, option: str) -> bool:
    """`option` appears in --help as a whole option (not the prefix of a longer one)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text) is not None


def flags_used(*services: str) -> set[str]:
    found = set()
    for name in services:
        found |= {t for t in tokens(goldilocks_image_services()[name]["command"]) if t[:2] == "--"}
    return found


def test_goldilocks_serve_exists():
    out = run_help("goldilocks", "serve")
    # what goldilocks-serve passes on (compose's command, after the script's name)
    for option in flags_used("goldilocks"):
        assert has_option(out, option), f"goldilocks serve has no {option}"


def test_ray_node_commands_exist():
    out = run_help("ray", "start")
    for option in flags_used("ray-head", "ray-worker", "ray-gpu-worker") | {
        "--disable-usage-stats"
    }:
        assert has_option(out, option), f"ray start has no {option}"
    run_help("ray", "health-check")  # the head's health check


def test_mlflow_server_has_basic_auth_and_every_flag_used():
    out = run_help("mlflow", "server")
    assert has_option(out, "--app-name") and "basic-auth" in out
    for option in flags_used("mlflow"):
        assert has_option(out, option), f"mlflow server has no {option}"


def fake_bin(tmp_path: Path, *programs: str) -> Path:
    """Stand-ins that log their arguments (and the auth ini, for mlflow) to calls.log."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for program in programs:
        stub = folder / program
        stub.write_text(
            "#!/bin/sh\n"
            f'echo "{program} $*" >> "{tmp_path}/calls.log"\n'
            'if [ -n "${MLFLOW_AUTH_CONFIG_PATH:-}" ]; then '
            f'cp "$MLFLOW_AUTH_CONFIG_PATH" "{tmp_path}/auth.ini"; fi\n'
        )
        stub.chmod(0o755)
    return folder


def test_goldilocks_serve_joins_ray_without_cpus_then_serves(tmp_path):
    stubs = fake_bin(tmp_path, "ray", "goldilocks")
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "RAY_ADDRESS": "ray-head:6379"}
    subprocess.run([str(SCRIPTS / "goldilocks-serve"), "--port", "8000"], env=env, check=True)
    ray_call, serve_call = (tmp_path / "calls.log").read_text().splitlines()
    assert ray_call.startswith("ray start --address=ray-head:6379 ")
    assert "--num-cpus=0" in ray_call and "--num-gpus=0" in ray_call
    assert serve_call == "goldilocks serve --port 8000"
    # without a cluster (or with the inline executor) it only serves
    (tmp_path / "calls.log").unlink()
    env = {"PATH": env["PATH"], "RAY_ADDRESS": "ray-head:6379", "GOLDILOCKS_EXECUTOR": "inline"}
    subprocess.run([str(SCRIPTS / "goldilocks-serve")], env=env, check=True)
    assert (tmp_path / "calls.log").read_text().splitlines() == ["goldilocks serve"]


def mlflow_env(stubs: Path) -> dict[str, str]:
    return {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "MLFLOW_AUTH_DATABASE_URI": "postgresql+psycopg://goldilocks@postgres:5432/mlflow_auth",
        "MLFLOW_AUTH_ADMIN_USERNAME": "root-of-trust",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password-0123",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "secret",
    }


def test_mlflow_serve_writes_the_auth_config_then_runs_the_server(tmp_path):
    stubs = fake_bin(tmp_path, "mlflow")
    env = mlflow_env(stubs) | {"MLFLOW_AUTH_DATABASE_URI": "postgresql://u@db:5432/auth?x=%41"}
    subprocess.run([str(SCRIPTS / "mlflow-serve"), "--app-name=basic-auth"], env=env, check=True)
    assert (tmp_path / "calls.log").read_text() == "mlflow server --app-name=basic-auth\n"
    ini_text = (tmp_path / "auth.ini").read_text()
    assert "admin-password-0123" not in ini_text  # MLflow reads the password from the env
    config = configparser.ConfigParser()  # as mlflow.server.auth.config reads it
    config.read_string(ini_text)
    section = config["mlflow"]
    assert section["database_uri"] == "postgresql://u@db:5432/auth?x=%41"
    assert section["admin_username"] == "root-of-trust"
    assert section["default_permission"] == "READ"
    assert section["authorization_function"].startswith("mlflow.server.auth:")


@pytest.mark.parametrize(
    "missing",
    ["MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_DATABASE_URI"],
)
def test_mlflow_serve_fails_fast_without_a_setting(missing, tmp_path):
    stubs = fake_bin(tmp_path, "mlflow")
    env = mlflow_env(stubs)
    del env[missing]
    result = subprocess.run(
        [str(SCRIPTS / "mlflow-serve")], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "set " in result.stderr
    assert not (tmp_path / "calls.log").exists(), "the server started anyway"


def test_compose_bind_mounts_exist():
    for name, svc in yaml.safe_load(COMPOSE.read_text())["services"].items():
        for vol in svc.get("volumes", []):
            source = str(vol).split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source} missing"


# ---------------------------------------------------------------- KubeRay


def test_kuberay_manifest_is_a_raycluster_of_the_image():
    docs = [d for d in yaml.safe_load_all(KUBERAY.read_text()) if d]
    cluster = next(d for d in docs if d["kind"] == "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    assert spec["rayVersion"] == pins["ray"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    assert len(groups) >= 2
    for group in groups:
        pod = group["template"]["spec"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        for container in pod["containers"]:
            assert "goldilocks" in container["image"]
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
            mounts = {m["mountPath"]: claims[m["name"]] for m in container["volumeMounts"]}
            assert mounts["/data"] == "goldilocks-data"
    service = next(d for d in docs if d["kind"] == "Deployment")
    container = service["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    name = cluster["metadata"]["name"]
    assert env["RAY_ADDRESS"] == f"{name}-head-svc:6379"
    assert container["command"][0] == "goldilocks-serve"


# ---------------------------------------------------------------- .env.example


def env_example_names() -> dict[str, str]:
    """VAR -> value for every `VAR=value` or commented `# VAR=value` line."""
    names = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            names[m.group(1)] = m.group(2)
    return names


def test_env_example_documents_every_variable_compose_reads():
    documented = env_example_names()
    used = compose_vars(COMPOSE) | compose_vars(GPU_COMPOSE)
    assert used - set(documented) == set(), "undocumented in .env.example"
    assert set(documented) - used == set(), "documented but never used"


def test_env_example_leaves_every_secret_empty():
    lines = ENV_EXAMPLE.read_text().splitlines()
    for secret in required_vars(COMPOSE) | required_vars(GPU_COMPOSE):
        assert f"{secret}=" in lines, f"{secret} must be an uncommented, empty line"
