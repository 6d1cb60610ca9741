# chargpt workflow, for every configured (run, seed):
# prepare -> train -> evaluate + sample -> report, then one summary across runs.
# Every rule runs project/run.py (or a script in workflow/scripts) and reads JSON; none
# imports the model code. See README.md for the rerun table.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


SCHEMA = "workflow/schemas/config.schema.yaml"


validate(config, SCHEMA)


container: config["container"]


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/track.smk"


check_declarations(rules)
check_report_is_current()


# Every result the README lists, so that a plain `snakemake` rebuilds a missing one.
rule all:
    default_target: True
    input:
        rules.summary.output,
        every_output(
            rules.prepare, rules.train, rules.evaluate, rules.sample, rules.report
        ),
        # One MLflow run per (run, seed), with `tracking: mlflow` only.
        every_output(rules.track) if config["tracking"] == "mlflow" else [],
