# One MLflow run per (run, seed) (`tracking: mlflow`; README.md: experiment tracking). No
# other rule reads tracking.json: a tracking failure fails this job alone, never a result.
rule track:
    input:
        resolved=stage_config("resolved"),
        train_log=rules.train.output.train_log,
        metrics=rules.evaluate.output.metrics,
        report=rules.report.output.report,
        plots=rules.report.output.plots,
        samples=rules.sample.output.samples,
        costs=job_files(
            rules.prepare.output.prepare_cost,
            rules.train.output.train_cost,
            rules.evaluate.output.evaluate_cost,
            rules.sample.output.sample_cost,
        ),
        monitor=rules.train.output.gpu[0],
        train_code=READS["code"]["train"],
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
