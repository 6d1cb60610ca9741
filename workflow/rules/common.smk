# Shared helpers: where outputs go, which source files and config values each rule reads.

import glob
import json
import shlex
import subprocess
import sys

import yaml

RUN = f"results/{config['run_name']}"
# The GPU jobs use every core for their host-side work (PyTorch's CPU threads); Snakemake
# scales a claim above --cores down to it. `workflow.cores` itself is not used because
# `snakemake --report` and --lint run without --cores.
ALL_CORES = 256


def monitor_args(wildcards, output):
    """gpu_monitor.py options: sampling intervals and PREFIX of the PREFIX.json/.csv outputs."""
    prefix = output.gpu[0].removesuffix(".json")
    interval = config["monitor"]
    return (
        f"--memory-interval {interval['memory_interval_s']}"
        f" --slow-interval {interval['slow_interval_s']} --out-prefix {prefix}"
    )


def sources(*parts):
    """project/run.py plus the .py files of the given project/ folders or files.

    A rule lists the code it runs as input, so editing that code (and only that code)
    reruns it.
    """
    files = ["project/run.py"]
    for part in parts:
        if part.endswith(".py"):
            files.append(f"project/{part}")
        else:
            files.extend(sorted(glob.glob(f"project/{part}/**/*.py", recursive=True)))
    return files


def project_config_files():
    """The project config files run.py may read: the plan plus the preset or the user's."""
    chosen = config["project_config"]
    second = "project/configs/cpu.yaml" if chosen == "auto" else chosen
    return ["project/configs/default.yaml", second]


def read_config_file(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise WorkflowError(
            f"project_config: {path} not found (use 'auto' or a path to a project YAML)"
        )


def reads(key, sections):
    return key.split(".")[0] in sections


def settings(*sections):
    """The project config values that one job reads, as params. A change reruns only
    the jobs that read it (and what depends on their outputs).
    """
    values = {}
    for path in project_config_files():
        raw = read_config_file(path)
        values[path] = {key: raw[key] for key in sections if key in raw}
    values["overrides"] = {
        key: value for key, value in config["overrides"].items() if reads(key, sections)
    }
    return values


def check_project_config():
    """Check the project config files and overrides with the project's own checker (a
    subprocess: the workflow never imports project code), so that a bad value stops the
    workflow before any job starts.
    """
    command = [sys.executable, "project/utils/config.py"]
    for path in project_config_files():
        read_config_file(path)  # a clear error for a missing file
        command += ["--config", path]
    for key, value in config["overrides"].items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise WorkflowError(f"project config: {result.stderr.strip()}")


check_project_config()


def run_args(*sections, cli=()):
    """project/run.py options for a rule: `cli` names the workflow config values it takes
    (epochs, seed, device, data_source); overrides are passed only for its sections.
    """
    args = ["--out-dir", RUN]
    if config["project_config"] != "auto":
        args += ["--config", config["project_config"]]
    flags = {"epochs": "--epochs", "seed": "--seed", "device": "--device"}
    for name in cli:
        if name == "data_source":
            if config["data_source"]:
                args += ["--data-source", config["data_source"]]
        else:
            args += [flags[name], str(config[name])]
    for key, value in config["overrides"].items():
        if reads(key, sections):
            args += ["--set", f"{key}={json.dumps(value)}"]
    return shlex.join(args)
