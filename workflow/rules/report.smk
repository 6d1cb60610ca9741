import snakemake as snakemake_package
from snakemake_interface_executor_plugins.settings import DeploymentMethod

IN_CONTAINER = (
    DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method
)


# Snakemake's edges are the cost record of each job that the report reads from, a file that
# every run of the job writes anew (it holds the run's timings); `params` names the rest of
# those jobs' files. `rule all` rebuilds any file that goes missing, so a sweep's DAG holds
# a few files a report, not every one (each file costs Snakemake a lookup, a wildcard match
# and a stat). The files it reads are those of harness/contract.py, by their names.
rule report:
    input:
        resolved=stage_config("resolved"),
        costs=job_files(*(output_pattern(f"{stage}_cost") for stage in STAGES)),
        deviations=f"{PLAN_DIR}/deviations.yaml",
        # The component table: each plan module's summary and plan ids (the planner).
        components=READS["components"],
        code=script_imports("make_report.py"),
    output:
        report=report(f"{RUN}/ml_res.md", category="Report", subcategory="{run}"),
        # loss.png, and gpu.png when a GPU job has samples to draw.
        plots=report(
            directory(f"{RUN}/plots"),
            patterns=["{name}.png"],
            category="Plots",
            subcategory="{run}",
        ),
    log:
        f"{RUN}/logs/report.log",
    params:
        manifest=in_data(output_pattern("manifest")),
        summary=output_pattern("summary"),
        train_log=output_pattern("train_log"),
        metrics=output_pattern("metrics"),
        checks=output_pattern("checks"),
        # What the plan shows of its outputs (their names in PLAN["report"], in order).
        texts=[output_pattern(name) for name in PLAN["report"]["texts"]],
        pictures=[output_pattern(name) for name in PLAN["report"]["pictures"]],
        shown=PLAN["report"],
        monitors=[file for stage in GPU_STAGES for file in monitor_files(stage)],
        benchmarks=job_files(*(benchmark_file(stage) for stage in STAGES)),
        plan={key: PLAN[key] for key in ("name", "title", "document")},
        trainer=TRAINER,
        container=config["container"],
        container_used=IN_CONTAINER,
        snakemake_version=snakemake_package.__version__,
    script:
        "../scripts/make_report.py"


rule summary:
    input:
        metrics=every_run(output_pattern("metrics")),
        train=every_run(output_pattern("summary")),
        monitor=every_run(monitor_files(TRAINER)[0]),
        code=script_imports("summarize.py"),
    output:
        table=report("results/summary.md", category="Summary"),
        plot=report("results/summary.png", category="Summary"),
    log:
        "results/logs/summary.log",
    params:
        runs=[run for run, _, _ in run_pairs()],
        seeds=[seed for _, seed, _ in run_pairs()],
        baseline=BASELINE,
        objective=PLAN["objective"],
    script:
        "../scripts/summarize.py"
