# Where the workflow's own files are on this machine: the Snakefile's folder when it runs from
# a checkout (or another workflow includes it as a module by path); for a module from a git
# source (`snakefile: github(...)`, gitlab(...), gitfile(...)), a copy of that repository at
# the module's commit. Snakemake reads a git source one file at a time, but the plans, the
# harness and the scripts that import each other run from a folder: the copy is extracted
# once into .snakemake/workflow-sources/ of the working folder, where a container sees it too.
# Results, the config and the data cache stay in the working folder either way.

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from snakemake.sourcecache import HostingProviderFile, LocalGitFile, LocalSourceFile

SOURCE_COPIES = Path(".snakemake") / "workflow-sources"


def local_folder(basedir):
    """The folder `basedir` (workflow.current_basedir where a Snakefile is read) on this
    machine: itself when local, else its folder in a copy of its git repository.
    """
    if isinstance(basedir, LocalSourceFile):
        return Path(basedir.get_path_or_uri(secret_free=True)).resolve()
    if isinstance(basedir, HostingProviderFile):
        # Snakemake's own bare clone, fetched as it read the Snakefile.
        git_dir, name = basedir.hosted_repo.repo_clone, Path(basedir.repo).name
    elif isinstance(basedir, LocalGitFile):
        git_dir = Path(basedir.repo_path)
        name = git_dir.resolve().name
    else:
        raise WorkflowError(
            f"the workflow runs from a folder or a git source (github, gitlab, gitfile), "
            f"not from {basedir.get_path_or_uri(secret_free=True)}"
        )
    return repository_copy(git_dir, basedir.ref, name) / basedir.path


def git(git_dir, *args):
    """The output of `git args` in the repository `git_dir` (bare or not)."""
    result = subprocess.run(["git", "-C", str(git_dir), *args], capture_output=True)
    if result.returncode != 0:
        raise WorkflowError(
            f"git {' '.join(args)} in {git_dir}: {result.stderr.decode().strip()}"
        )
    return result.stdout


def repository_copy(git_dir, ref, name):
    """The files of the repository `git_dir` at `ref`, in a folder named by the
    repository's `name` and the commit: made once (atomically: another Snakemake may make
    it at the same time), then reused.
    """
    commit = git(git_dir, "rev-parse", "--verify", f"{ref}^{{commit}}").decode().strip()
    folder = SOURCE_COPIES / f"{name}@{commit[:12]}"
    if not folder.is_dir():
        SOURCE_COPIES.mkdir(parents=True, exist_ok=True)
        archive = git(git_dir, "archive", "--format=tar", commit)
        scratch = tempfile.mkdtemp(dir=SOURCE_COPIES, prefix=".partial-")
        try:
            with tarfile.open(fileobj=io.BytesIO(archive)) as files:
                # The "data" filter (Python 3.11.4 on): regular files within the folder.
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                files.extractall(scratch, **safe)
            os.rename(scratch, folder)
        except OSError:
            if not folder.is_dir():  # else made meanwhile by another Snakemake
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return folder.resolve()


def workflow_file(path):
    """`path` (relative to the repository's root: workflow/scripts/..., project) in this
    workflow's copy: relative to the working folder where the copy lies inside it (in the
    repository's root, `path` itself, so that commands and inputs stay as they are), else
    absolute.
    """
    file = ROOT / path
    here = Path.cwd().resolve()
    return str(file.relative_to(here)) if file.is_relative_to(here) else str(file)


def plan_folder(plan):
    """The plan folder that config's `plan` names: one with a plan.py in the working
    folder (or an absolute path) as given, else the workflow's own (project, plans/digits).
    """
    if Path(plan).is_absolute() or (Path(plan) / "plan.py").is_file():
        return plan
    return workflow_file(plan)
