import os

import snakemake as snakemake_package
from snakemake_interface_executor_plugins.settings import DeploymentMethod

IN_CONTAINER = (
    DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method
)


rule report:
    input:
        summary=rules.train.output.summary,
        log=rules.train.output.log,
        metrics=rules.evaluate.output.metrics,
        checks=rules.evaluate.output.checks,
        samples=rules.sample.output.text,
        samples_meta=rules.sample.output.meta,
        manifest=rules.data.output.manifest,
        gpu=[rules.train.output.gpu, rules.evaluate.output.gpu, rules.sample.output.gpu],
        deviations="project/deviations.yaml",
        code=[
            "workflow/scripts/make_report.py",
            "workflow/scripts/report_plots.py",
            *sources("data", "model", "training", "testing", "utils"),
        ],
    output:
        report=report(f"{RUN}/ml_res.md", category="Report"),
        loss_plot=report(f"{RUN}/plots/loss.png", category="Plots"),
        gpu_plot=report(f"{RUN}/plots/gpu.png", category="Plots"),
    log:
        f"{RUN}/logs/report.log",
    benchmark:
        f"{RUN}/benchmarks/report.tsv"
    params:
        container=config["container"],
        container_flag="--container-used" if IN_CONTAINER else "",
        snakemake_version=snakemake_package.__version__,
        run_dir=lambda wildcards, output: os.path.dirname(output.report),
    shell:
        "python workflow/scripts/make_report.py --run-dir {params.run_dir}"
        " --container {params.container:q} {params.container_flag}"
        " --snakemake-version {params.snakemake_version} > {log} 2>&1"
