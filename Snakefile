# The workflow of a research plan (config/config.yaml: plan), for every configured
# (run, seed): the plan's stages in its order (its plan.py declares them) -> report, then
# one summary across runs. Every rule runs the plan's run.py (or a script in
# workflow/scripts) and reads JSON; none imports plan code. See README.md for the rerun
# table.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


SCHEMA = "workflow/schemas/config.schema.yaml"


validate(config, SCHEMA)


container: config["container"]


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/track.smk"


check_declarations(rules)
check_report_is_current()


# Every result the README lists, so that a plain `snakemake` rebuilds a missing one.
rule all:
    default_target: True
    input:
        rules.summary.output,
        every_output(*(getattr(rules, stage) for stage in STAGES), rules.report),
        # One MLflow run per (run, seed), with `tracking: mlflow` only.
        every_output(rules.track) if config["tracking"] == "mlflow" else [],
