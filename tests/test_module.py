"""The workflow as the Snakemake ecosystem expects it (docs/snakemake-module.md): the
catalog's "standardized usage" (workflow/Snakefile, config/README.md,
.snakemake-workflow-catalog.yml), and the workflow included as a module by another
workflow, from a scratch folder, by a path and from a git host (github(...)), its results
in that folder.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from workflow_runs import REPO, SHARED_DATA, copy_repo, snakemake, workflow_env

CATALOG = REPO / ".snakemake-workflow-catalog.yml"
# The catalog's keys (snakemake-workflow-catalog: docs/about/adding_workflows.md); the
# `singularity*` ones are deprecated.
DEPLOYMENT_KEYS = {"conda", "apptainer", "apptainer+conda", "report"}
# Every job of the default config: the plan's stages (project/plan.py), then its report and
# the summary; `all` is the default target.
JOBS = ["prepare", "train", "evaluate", "sample", "report", "summary", "all"]


def test_the_catalog_finds_the_standardized_layout() -> None:
    assert (REPO / "workflow" / "Snakefile").is_file()
    assert (REPO / "config" / "README.md").is_file()
    usage = yaml.safe_load(CATALOG.read_text(encoding="utf-8"))["usage"]
    flags = usage["mandatory-flags"]
    assert flags["desc"].strip() and isinstance(flags["flags"], str)
    deployment = usage["software-stack-deployment"]
    assert set(deployment) <= DEPLOYMENT_KEYS, set(deployment) - DEPLOYMENT_KEYS
    assert deployment["apptainer"] is True and "apptainer+conda" in deployment
    # The flags, with the documented deployment method, are Snakemake options.
    from snakemake.cli import get_argument_parser

    args = get_argument_parser().parse_args(["--sdm", "apptainer", *shlex.split(flags["flags"])])
    assert args.apptainer_args == "--nv"


def module_folder(folder: Path, source: str, use: str = "use rule * from chargpt") -> Path:
    """A scratch folder whose Snakefile includes the workflow as the module `chargpt` from
    `source` (a Snakefile source: a quoted path, github(...)), with a copy of the
    repository's config.
    """
    (folder / "config").mkdir(parents=True)
    shutil.copy2(REPO / "config" / "config.yaml", folder / "config" / "config.yaml")
    (folder / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n\n'
        f"module chargpt:\n    snakefile:\n        {source}\n    config:\n        config\n\n\n"
        f"{use}\n",
        encoding="utf-8",
    )
    return folder


def job_counts(output: str) -> dict[str, int]:
    """A dry run's "Job stats" table: rule name -> job count."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("use", "prefix"),
    [("use rule * from chargpt", ""), ("use rule * from chargpt as chargpt_*", "chargpt_")],
    ids=["names-kept", "renamed"],
)
def test_module_by_path_plans_every_stage(tmp_path: Path, use: str, prefix: str) -> None:
    """From a scratch folder, the module by its path plans every job of the default run
    (renamed with `as chargpt_*`), runs the repository's plan and scripts by their paths,
    and writes nothing into the repository's copy.
    """
    repo = copy_repo(tmp_path / "chargpt")
    work = module_folder(tmp_path / "analysis", f'"{repo}/workflow/Snakefile"', use)
    result = snakemake(work, "-n", "-p")
    output = result.stdout + result.stderr
    assert job_counts(output) == {**{f"{prefix}{job}": 1 for job in JOBS}, "total": 7}
    assert f"python {repo}/project/run.py prepare " in output
    assert f"python {repo}/workflow/scripts/gpu_monitor.py " in output
    assert (work / "results" / "code" / "train.json").is_file()  # the planner's, here
    assert not (repo / "results").exists() and not (repo / ".snakemake").exists()


@pytest.mark.slow
def test_module_by_path_prepares_the_data_in_the_working_folder(tmp_path: Path) -> None:
    if not (SHARED_DATA / "tinyshakespeare" / "input.txt").is_file():
        pytest.skip(f"the verified Tiny Shakespeare copy is not at {SHARED_DATA}")
    repo = copy_repo(tmp_path / "chargpt")
    work = module_folder(tmp_path / "analysis", f'"{repo}/workflow/Snakefile"')
    snakemake(work, "--cores", "1", "--until", "prepare")
    (data,) = (work / "results" / "data").iterdir()
    assert (data / "data" / "manifest.json").is_file()
    assert (data / "data" / "train.bin").stat().st_size > 0
    assert not (repo / "results").exists() and not (repo / ".snakemake").exists()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_module_from_github_runs_from_a_copy_at_its_tag(tmp_path: Path) -> None:
    """`snakefile: github("chargpt/chargpt-workflow", ..., tag=...)`, offline: git's
    insteadOf points the GitHub address at a local repository of the copy. Snakemake clones
    it; the workflow runs its plan and scripts from the files of the tag's commit, extracted
    into the working folder's .snakemake/workflow-sources/, not from a later commit.
    """
    repo = copy_repo(tmp_path / "chargpt-workflow")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "v")
    git(repo, "tag", "v0.1.0")
    tagged = git(repo, "rev-parse", "v0.1.0^{commit}")
    (repo / "project" / "run.py").write_text("raise SystemExit('not the tag')\n")
    git(repo, "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qam", "x")
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text(
        f'[url "file://{repo}"]\n\tinsteadOf = https://github.com/chargpt/chargpt-workflow\n',
        encoding="utf-8",
    )
    env = workflow_env(
        GIT_CONFIG_GLOBAL=str(gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    source = 'github("chargpt/chargpt-workflow", path="workflow/Snakefile", tag="v0.1.0")'
    work = module_folder(tmp_path / "analysis", source)
    output = snakemake(work, "-n", "-p", env=env).stdout
    copy = Path(".snakemake") / "workflow-sources" / f"chargpt-workflow@{tagged[:12]}"
    assert job_counts(output)["total"] == 7
    assert f"python {copy}/project/run.py prepare " in output
    assert (work / copy / "project" / "run.py").read_text() == (
        REPO / "project" / "run.py"
    ).read_text()
