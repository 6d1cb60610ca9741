# Runs, their folders, and what each stage reads, as the project resolves it.

import ast
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import psutil
from snakemake.io import PeriodicityDetector

# One folder per (run, seed): every file of that run lives under it. The prepared data lives
# in one folder per distinct data configuration, shared by the runs that have it.
RESULTS = "results"
PLAN_DIR = plan_folder(config["plan"])  # the plan folder: its run.py runs every stage
RUN = "results/{run}/seed{seed}"
DATA = "results/data/{key}"
RUN_NAME_SCHEMA = CONFIG_SCHEMA["$defs"]["run_name"]  # the Snakefile read SCHEMA
RUN_NAME = RUN_NAME_SCHEMA["pattern"]
# This workflow's scripts (on sys.path: the Snakefile put them there).
SCRIPTS = Path(workflow_file("workflow/scripts"))
# The GPU monitor's command, before a GPU stage's own.
GPU_MONITOR = f"python {shlex.quote(str(SCRIPTS / 'gpu_monitor.py'))}"
import resolve
import supervisor
from search_spec import SearchError, trial_runs
from sweep import SweepError, sweep_runs


wildcard_constraints:
    run=RUN_NAME.removeprefix("^").removesuffix("$"),
    seed=r"\d+",
    key=r"[0-9a-f]+",


# A GPU job claims its share of the cores (Snakemake sets OMP_NUM_THREADS from it): all of
# them with one GPU slot, 1/N with --resources gpu=N, so that N GPU jobs run side by side.
# `snakemake --report` and --lint run without --cores; a claim above --cores is scaled down.
ALL_CORES = 256


def global_resource(name, default):
    resource = workflow.global_resources.get(name)
    return getattr(resource, "value", None) or default


# One number for every GPU job, fixed before any job: a function would run once a job.
GPU_JOB_THREADS = max(
    1, global_resource("_cores", ALL_CORES) // global_resource("gpu", 1)
)


# What to change where a name does not fit, by where the name comes from.
RENAME = {
    "runs": "rename it",
    "sweep": "set a shorter sweep.prefix, or sweep fewer keys",
    "search": "set a shorter search.study",
}


def check_run_names(source, names):
    """Stop, in one line, at a run name (of `source`: runs, sweep or search) that is no
    folder name under results/ or no value of Snakemake's `run` wildcard: the schema's
    run_name (its pattern and its maxLength, room for every name made of it), and no
    ending of one piece repeated 20 times, which Snakemake takes for a loop of jobs (its
    PeriodicWildcardError, in the middle of planning them).
    """
    limit = RUN_NAME_SCHEMA["maxLength"]
    periodic = PeriodicityDetector()
    for name in names:
        shown = name if len(name) <= 40 else f"{name[:40]}..."
        if len(name) > limit:
            problem = f"is {len(name)} characters long, more than {limit}"
        elif not re.fullmatch(RUN_NAME, name):
            problem = f"does not match {RUN_NAME}"
        elif piece := periodic.is_periodic(name):
            problem = f"ends in {piece!r} repeated (Snakemake: a loop of jobs)"
        else:
            continue
        raise WorkflowError(
            f"{source}: the run name {shown} {problem}; {RENAME[source]} "
            f"(run_name in {SCHEMA})"
        )


def configured_runs():
    """The runs listed under `runs:`, then those of the `sweep:`, then the trials of the
    `search:` that are training or complete (workflow/scripts/search.py), by name.
    """
    # `base:` with nothing after it is null in YAML: no settings.
    listed = {name: run or {} for name, run in config["runs"].items()}
    try:
        swept = sweep_runs(config.get("sweep"))
        searched = trial_runs(config.get("search"))
    except (SweepError, SearchError) as error:
        raise WorkflowError(str(error)) from None
    for source, names in (("runs", listed), ("sweep", swept), ("search", searched)):
        check_run_names(source, names)
    both = sorted(set(listed) & set(swept))
    if both:
        raise WorkflowError(
            f"runs: {', '.join(both)} is listed and swept; rename it or set sweep.prefix"
        )
    trials = sorted(set(searched) & (set(listed) | set(swept)))
    if trials:
        raise WorkflowError(
            f"runs: {', '.join(trials)} is also a trial's run; rename it or set search.study"
        )
    runs = {**listed, **swept, **searched}
    if not runs:
        raise WorkflowError("no runs: list one under `runs:` or give a `sweep:`")
    return runs


RUNS = configured_runs()
# The run that every other is compared with in results/summary.md: the first by default.
BASELINE = config.get("baseline") or next(iter(RUNS))
if BASELINE not in RUNS:
    raise WorkflowError(
        f"baseline: {BASELINE} is no run; name one of: {', '.join(list(RUNS)[:10])}"
    )


def run_pairs():
    """(run name, seed, run settings) of every configured run and seed."""
    for name, run in RUNS.items():
        for seed in run.get("seeds", config["seeds"]):
            yield name, seed, run


def run_wildcards():
    """The wildcards of every configured (run, seed)."""
    return [{"run": run, "seed": seed} for run, seed, _ in run_pairs()]


def every_run(path):
    """`path` (a pattern of RUN) for every configured (run, seed)."""
    return [path.format(**wildcards) for wildcards in run_wildcards()]


def config_dir(run, seed):
    return f"{RUN.format(run=run, seed=seed)}/config"


def run_spec(name, seed, run):
    """How the project resolves one (run, seed) (resolve.py), its seed listed, not an
    override.
    """
    if "seed" in {**config["overrides"], **run.get("overrides", {})}:
        raise WorkflowError(
            f"runs: {name}: 'seed' cannot be an override; list seeds under `seeds:` "
            "(for every run, or per run)"
        )
    return resolve.run_spec(config, config_dir(name, seed), run, seed)


def resolve_runs():
    """Let the project resolve every run once (resolve.py) and write each stage's config
    file, rewritten only when its content changes. A bad value in any run stops the
    workflow here, before any job.
    """
    specs = [run_spec(*pair) for pair in run_pairs()]
    result = resolve.read_runs(PLAN_DIR, RESULTS, specs)
    if result.returncode != 0:
        raise WorkflowError(f"project config: {result.stderr.strip()}")
    return json.loads(result.stdout)


READS = resolve_runs()
# The plan's declaration (harness/plan.py: Plan.record): its name, stages, objective.
PLAN = READS["plan"]
# Each stage as the plan declares it: its config sections, inputs and outputs, its role.
STAGES = READS["stages"]
PRODUCER = {name: stage for stage, read in STAGES.items() for name in read["outputs"]}
# The first stage prepares the data that runs share; one stage trains (and resumes).
FIRST = next(iter(STAGES))
TRAINER = next(stage for stage, read in STAGES.items() if read["trains"])
GPU_STAGES = [stage for stage, read in STAGES.items() if read["gpu"]]
# A rule's named inputs besides its stage's declared ones (what reads.py writes for it).
PLANNED_INPUTS = {"config", "code", "content"}


# A sweep of a thousand runs has thousands of jobs: Snakemake calls an input function once
# for each job, so a file that a pattern can name is given as a pattern.
FIRST_RUN = next(iter(READS["runs"].values()))


def stage_config(stage):
    """The config file of `stage` for the job's (run, seed): reads.py names it alike in
    every run's config folder (checked below).
    """
    return f"{config_dir('{run}', '{seed}')}/{STAGE_CONFIG_NAMES[stage]}"


STAGE_CONFIG_NAMES = {
    stage: Path(file).name for stage, file in FIRST_RUN["configs"].items()
}
for folder, run in READS["runs"].items():
    for stage, file in run["configs"].items():
        if file != f"{folder}/{STAGE_CONFIG_NAMES[stage]}":
            raise WorkflowError(
                f"reads.py wrote {file}, not in {folder} as stage_config says"
            )


def data_dir(wildcards):
    """The folder of the prepared data that the job's (run, seed) trains on."""
    return READS["runs"][config_dir(wildcards.run, wildcards.seed)]["data_folder"]


def in_data(pattern):
    """A file of DATA (a pattern with {key}) for the job's (run, seed): a plain path when
    every run has the same data (one folder), else a function of the job's run.
    """
    if len(READS["data_folders"]) == 1:
        return pattern.replace(DATA, FIRST_RUN["data_folder"])
    return lambda wildcards: pattern.replace(DATA, data_dir(wildcards))


def job_files(*patterns):
    """Files of RUN and of DATA, for the job's (run, seed)."""
    if len(READS["data_folders"]) == 1:
        return [in_data(pattern) for pattern in patterns]
    return lambda wildcards: [
        in_data(pattern)(wildcards).format(run=wildcards.run, seed=wildcards.seed)
        for pattern in patterns
    ]


def stage_outputs(stage, folder, **flags):
    """The stage's declared outputs under `folder` (RUN, or DATA for prepare); `flags`
    wraps some of them by name (e.g. in Snakemake's `report()`).
    """
    return {
        name: flags.get(name, str)(f"{folder}/{path}")
        for name, path in STAGES[stage]["outputs"].items()
    }


def stage_inputs(stage):
    """The stage's declared inputs, each where its producer writes it for the job."""
    return {name: stage_file(name) for name in STAGES[stage]["inputs"]}


def stage_file(name):
    """File `name` (a stage's output) of the job's (run, seed)."""
    if PRODUCER[name] == FIRST:
        return in_data(output_pattern(name))
    return output_pattern(name)


def output_pattern(name):
    """The path pattern of output `name`: under DATA for the first stage's, else RUN."""
    stage = PRODUCER[name]
    return f"{DATA if stage == FIRST else RUN}/{STAGES[stage]['outputs'][name]}"


def monitor_files(stage):
    """The GPU monitor's record and samples of `stage` (a GPU stage) for each job."""
    return multiext(f"{RUN}/monitor/{stage}", ".json", ".csv")


def benchmark_file(stage):
    """Snakemake's benchmark file of `stage` for each job."""
    return f"{DATA if stage == FIRST else RUN}/benchmarks/{stage}.tsv"


def shown_in_report(stage):
    """The outputs of `stage` that the plan shows in the report (texts and pictures),
    wrapped for Snakemake's HTML report too.
    """
    shown = set(PLAN["report"]["texts"]) | set(PLAN["report"]["pictures"])
    return {
        name: lambda path: report(path, category="Outputs", subcategory="{run}")
        for name in STAGES[stage]["outputs"]
        if name in shown
    }


def job_wildcards(pattern):
    """The wildcards of every job whose outputs match `pattern`: each data folder, or
    each configured (run, seed).
    """
    if DATA in pattern:
        return [{"key": Path(folder).name} for folder in READS["data_folders"]]
    return run_wildcards()


def every_output(*proxies):
    """The targets of the default run, so that a missing result is rebuilt, not overlooked:
    for every job of these rules, its first output, and its missing ones (its benchmark
    file too) when the first is there. Snakemake reruns a job for a missing output only
    when that file is wanted, and a job whose first output is missing runs anyway: a
    sweep's dry run is spared tens of thousands of targets.
    """
    outputs = []
    for proxy in proxies:
        first, *rest = proxy.output
        rest += [proxy.benchmark] if proxy.rule.benchmark else []
        for wildcards in job_wildcards(first):
            outputs.append(first.format(**wildcards))
            if os.path.exists(outputs[-1]):
                files = (pattern.format(**wildcards) for pattern in rest)
                outputs += [file for file in files if not os.path.exists(file)]
    return outputs


# How a dry run opens the block of each job: "<keyword> NAME:", the keyword being the
# rule keyword itself, or "local" and that keyword.
RULE_KEYWORD = "rule"
DRY_RUN_JOB = rf"(?:local)?{RULE_KEYWORD} (\w+):"
# The name of `rule all` as the dry run prints it (a module's `use rule * from ... as x_*`
# renames it).
ALL_RULE = workflow.modifier.modify_rulename("all")


def stale_results(argv):
    """What `snakemake -n` with the same arguments would still run, as "rule run/seed"
    (or "rule data folder") lines; [] when every result is complete and current.
    """
    plan = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", *argv],
        capture_output=True,
        text=True,
    )
    if plan.returncode != 0:
        raise WorkflowError(f"the dry run before the report failed:\n{plan.stderr}")
    jobs = []
    for block in re.split(rf"\n(?={DRY_RUN_JOB})", plan.stdout):
        name = re.match(DRY_RUN_JOB, block)
        where = re.search(r"wildcards: (.*)", block)
        if name and name[1] != ALL_RULE:
            jobs.append(f"{name[1]} {where[1] if where else ''}".strip())
    return jobs


def check_report_is_current():
    """`snakemake --report` bundles the results as they are: refuse while any of them is
    missing, stale or left incomplete by a killed job, and say what to run.
    """
    argv = sys.argv[1:]
    given = [i for i, arg in enumerate(argv) if arg.split("=")[0] == "--report"]
    if not given:
        return
    (at,) = given
    takes_value = (
        "=" not in argv[at] and at + 1 < len(argv) and not argv[at + 1].startswith("-")
    )
    stale = stale_results(argv[:at] + argv[at + 1 + takes_value :])
    if stale:
        raise WorkflowError(
            "the report would show results that are missing or not current; bring them up "
            "to date first (snakemake --cores all), then run the report again. Still to "
            "run:\n  " + "\n  ".join(stale)
        )


def check_declarations(rules):
    """Stop here unless the rule of each stage names exactly the files it declares."""
    for stage, read in STAGES.items():
        declared_rule = getattr(rules, stage)
        inputs = set(declared_rule.input.keys()) - PLANNED_INPUTS
        outputs = set(declared_rule.output.keys()) - {"gpu"}
        if inputs != set(read["inputs"]) or outputs != set(read["outputs"]):
            raise WorkflowError(
                f"the {stage} rule's named inputs {sorted(inputs)} and outputs "
                f"{sorted(outputs)} differ from the stage's declaration (STAGE in its "
                f"project module): inputs {sorted(read['inputs'])}, outputs "
                f"{sorted(read['outputs'])}; take them from stage_inputs and stage_outputs"
            )


def train_devices():
    """The devices of each run's training (the plan's devices key; 1 without one), the GPUs
    its training job asks for (torchrun, DDP): one number when every run has the same, else
    a function of the job's (run, seed).
    """
    key = PLAN["devices_key"]
    devices = {}
    for folder, run in READS["runs"].items():
        with open(run["configs"][TRAINER], encoding="utf-8") as handle:
            value = json.load(handle)
        for part in key.split(".") if key else ():
            value = value[part]
        devices[folder] = value if key else 1
    if len(set(devices.values())) == 1:
        return next(iter(devices.values()))
    return lambda wildcards: devices[config_dir(wildcards.run, wildcards.seed)]


def script_imports(entry):
    """The workflow scripts that the rule's script `entry` imports, directly or not:
    Snakemake reruns a rule when its own script changes, not when a module it imports does.
    """
    found, todo = set(), [entry]
    while todo:
        tree = ast.parse((SCRIPTS / todo.pop()).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                names = [node.module] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                file = f"{name}.py"
                if (SCRIPTS / file).is_file() and file not in found:
                    found.add(file)
                    todo.append(file)
    return sorted(str(SCRIPTS / file) for file in found)


def file_options(stage):
    """A params function: run.py's file options for the stage's declared files, `--best
    PATH ...`, from the job's named inputs and outputs (check_declarations holds those to
    the declaration). A function of the stage, bound as each stage's rule is defined (a
    shell command is evaluated when its job runs, after the loop over the stages).
    """
    declared = STAGES[stage]

    def options(wildcards, input, output):
        named = [(name, input[name]) for name in declared["inputs"]]
        named += [(name, output[name]) for name in declared["outputs"]]
        return " ".join(
            f"--{name.replace('_', '-')} {shlex.quote(str(path))}"
            for name, path in named
        )

    return options


def monitor_wrapper(stage):
    """A params function: the GPU monitor's command line before the stage's own (a GPU
    stage), or nothing.
    """

    def wrapper(wildcards, output, resources):
        if not STAGES[stage]["gpu"]:
            return ""
        monitor = monitor_args(wildcards, output, resources)
        return f"{GPU_MONITOR} {monitor} -- "

    return wrapper


def monitor_args(wildcards, output, resources):
    """gpu_monitor.py options: a GPU slot, sampling intervals, the outputs' PREFIX.

    A job that a cluster scheduler places gets its GPUs from the scheduler, and the slot
    locks would sit in the shared checkout, one lock file for all the nodes: profiles for
    clusters set the resource `gpu_slots: 0` to turn them off.
    """
    prefix = output.gpu[0].removesuffix(".json")
    interval = config["monitor"]
    slots = "--slot-dir .snakemake/gpu-slots " if resources.get("gpu_slots", 1) else ""
    return (
        f"{slots}--memory-interval {interval['memory_interval_s']}"
        f" --slow-interval {interval['slow_interval_s']} --out-prefix {prefix}"
    )


# Snakemake passes no stop signal on to the jobs it runs itself: sent to it alone (`kill -INT
# PID`, a CI cancel, a script that runs it), SIGINT waits for them to end, SIGTERM lets them
# finish, SIGHUP ends Snakemake and leaves them running (and its lock behind). So it stops them
# first, as Ctrl-C in a terminal does: SIGINT to each process of its jobs that is in its own
# process group (a job's shell and pipeline; gpu_monitor.py then stops training within
# --kill-after); then it does as before, and on SIGHUP what it does on SIGINT.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_jobs():
    """SIGINT to what Ctrl-C would reach of the running jobs (not Snakemake itself)."""
    group = os.getpgrp()
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == group:
                process.send_signal(signal.SIGINT)


def stopping_jobs_first(handler):
    """A signal handler that stops the jobs, then calls `handler`."""

    def stop(signum, frame):
        stop_jobs()
        handler(signum, frame)

    return stop


def stop_jobs_on_stop_signals():
    """Make each of STOP_SIGNALS stop the jobs first, unless it is ignored (nohup)."""
    for number in STOP_SIGNALS:
        previous = signal.getsignal(number)
        if previous != signal.SIG_IGN:
            then = previous if callable(previous) else signal.default_int_handler
            signal.signal(number, stopping_jobs_first(then))


# A Snakemake killed outright (`kill -9`, a node that went down) leaves its lock behind; its
# jobs end with it (supervisor.py: a job's wrapper stops the command when the job's
# Snakemake has ended). So the next Snakemake lifts a lock that no Snakemake in this folder
# holds, says so, and reruns the jobs left incomplete: training resumes from its checkpoint.
# Locks of Snakemake's default (file) storage of its records, in the folder it runs in.
LOCKS = Path(".snakemake/locks")


def snakemake_runs_here():
    """Whether another Snakemake (not this one) works in this folder."""
    here = Path.cwd().resolve()
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        info = process.info
        if info["pid"] != os.getpid() and info["cwd"] and Path(info["cwd"]) == here:
            if supervisor.is_snakemake(info["cmdline"] or []):
                return True
    return False


def lift_stale_lock():
    """Remove the lock files that no Snakemake holds any more (as `snakemake --unlock`)."""
    stale = sorted(LOCKS.glob("*.lock")) if LOCKS.is_dir() else []
    if stale and not snakemake_runs_here():
        for lock in stale:
            lock.unlink(missing_ok=True)
        print(
            f"Lifted the lock of a Snakemake that no longer runs here ({len(stale)} files in "
            f"{LOCKS}): it was killed outright; its unfinished jobs run again, training "
            "from its newest checkpoint",
            file=sys.stderr,
        )


if workflow.is_main_process:
    lift_stale_lock()


onstart:
    # Once the scheduler has set its own SIGTERM handler, which this one then calls.
    if workflow.local_exec:
        stop_jobs_on_stop_signals()
