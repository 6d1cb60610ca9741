# The workflow of a research plan (config/config.yaml: plan), for every configured
# (run, seed): the plan's stages in its order (its plan.py declares them) -> report, then
# one summary across runs. Every rule runs the plan's run.py (or a script in
# workflow/scripts) and reads JSON; none imports plan code. See README.md for the rerun
# table.

import sys

from snakemake.utils import min_version

min_version("9.0")

CONFIG = "config/config.yaml"
SCHEMA = "workflow/schemas/config.schema.yaml"
sys.path.insert(0, "workflow/scripts")
import config_checks

# Snakemake's own message for a config file that it cannot read names no file, line or
# column. (It reads a --configfile before this file runs: its own message stands there.)
if unreadable := config_checks.file_problem(CONFIG):
    raise WorkflowError(unreadable)


configfile: CONFIG


# Values given with --config as a config file would give them (Snakemake hands list and
# mapping items over as strings), then the schema: its first refusal is one line.
CONFIG_SCHEMA = config_checks.read_schema(SCHEMA)
COMMAND_LINE = workflow.config_settings  # .config: what --config gave; .config_args: its text
config_checks.retype_command_line(config, COMMAND_LINE.config, CONFIG_SCHEMA)
if refused := config_checks.config_problem(config, CONFIG_SCHEMA, COMMAND_LINE):
    raise WorkflowError(refused)


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
