import snakemake as snakemake_package
from snakemake_interface_executor_plugins.settings import DeploymentMethod

IN_CONTAINER = (
    DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method
)


# Snakemake's edges are the cost record of each job that the report reads from, a file that
# every run of the job writes anew (it holds the run's timings); `params` names the rest of
# those jobs' files. `rule all` rebuilds any file that goes missing, so a sweep's DAG holds
# 9 files a report, not 26 (each file costs Snakemake a lookup, a wildcard match and a stat).
rule report:
    input:
        resolved=stage_config("resolved"),
        costs=job_files(
            rules.prepare.output.prepare_cost,
            rules.train.output.train_cost,
            rules.evaluate.output.evaluate_cost,
            rules.sample.output.sample_cost,
        ),
        deviations=f"{PLAN_DIR}/deviations.yaml",
        # The component table: each project module's summary and plan ids (reads.py).
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
        manifest=in_data(rules.prepare.output.manifest),
        summary=rules.train.output.summary,
        train_log=rules.train.output.train_log,
        metrics=rules.evaluate.output.metrics,
        checks=rules.evaluate.output.checks,
        samples=rules.sample.output.samples,
        samples_meta=rules.sample.output.samples_meta,
        monitors=[
            *rules.train.output.gpu,
            *rules.evaluate.output.gpu,
            *rules.sample.output.gpu,
        ],
        benchmarks=job_files(
            rules.prepare.benchmark,
            rules.train.benchmark,
            rules.evaluate.benchmark,
            rules.sample.benchmark,
        ),
        container=config["container"],
        container_used=IN_CONTAINER,
        snakemake_version=snakemake_package.__version__,
    script:
        "../scripts/make_report.py"


rule summary:
    input:
        metrics=every_run(rules.evaluate.output.metrics),
        train=every_run(rules.train.output.summary),
        monitor=every_run(rules.train.output.gpu[0]),
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
    script:
        "../scripts/summarize.py"
