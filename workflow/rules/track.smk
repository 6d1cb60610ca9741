# One MLflow run per (run, seed) (`tracking: mlflow`; docs/tracking.md). No
# other rule reads tracking.json: a tracking failure fails this job alone, never a result.
rule track:
    input:
        resolved=stage_config("resolved"),
        train_log=output_pattern("train_log"),
        metrics=output_pattern("metrics"),
        report=rules.report.output.report,
        plots=rules.report.output.plots,
        shown=[
            output_pattern(name)
            for name in (*PLAN["report"]["texts"], *PLAN["report"]["pictures"])
        ],
        costs=job_files(*(output_pattern(f"{stage}_cost") for stage in STAGES)),
        monitor=monitor_files(TRAINER)[0],
        train_code=READS["code"][TRAINER],
        code=script_imports("track.py"),
    output:
        tracking=f"{RUN}/tracking.json",
    log:
        f"{RUN}/logs/track.log",
    params:
        run="{run}",
        seed="{seed}",
        experiment=PLAN["name"],
        # The local store; MLFLOW_TRACKING_URI in the environment names another.
        store=f"{RESULTS}/mlflow.db",
        artifacts=f"{RESULTS}/mlartifacts",
        container=config["container"],
        container_used=IN_CONTAINER,
    script:
        "../scripts/track.py"
