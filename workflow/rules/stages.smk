# The plan's stages, one rule each, named as its declaration (plan.py) names them, in its
# order. Each runs `python <plan>/run.py <stage>` with the sections it reads and its
# declared files. Three kinds, by the stage's role:
#   - the first stage prepares the data: one job per data configuration, shared by the
#     runs that have it (results/data/<key>/), with the source the planner located;
#   - the stage that trains resumes from its work folder, is retried, and asks for the
#     plan's devices;
#   - every other stage runs once a (run, seed); a stage that needs a GPU runs under the
#     GPU monitor with a GPU slot.
# A rule's shell command is evaluated when its job runs, so what differs between stages
# comes in through params bound here, never through the loop's variable.
RUN_PY = f"python {shlex.quote(f'{PLAN_DIR}/run.py')}"


rule:
    name:
        FIRST
    input:
        config=f"{DATA}/config/{FIRST}.json",
        # The data's SHA-256 decides when it reruns; where it is found (source.json) does
        # not: the same bytes through another mirror or a container's bind are the same.
        content=f"{DATA}/content.json",
        code=READS["code"][FIRST],
    output:
        **stage_outputs(FIRST, DATA),
    log:
        f"{DATA}/logs/{FIRST}.log",
    benchmark:
        benchmark_file(FIRST)
    params:
        stage=FIRST,
        files=file_options(FIRST),
        source=f"{DATA}/source.json",
    shell:
        f"{RUN_PY} {{params.stage}} --stage-config {{input.config}}"
        " --source {params.source:q} {params.files} > {log} 2>&1"


rule:
    name:
        TRAINER
    input:
        **stage_inputs(TRAINER),
        config=stage_config(TRAINER),
        code=READS["code"][TRAINER],
    output:
        **stage_outputs(TRAINER, RUN, **shown_in_report(TRAINER)),
        gpu=monitor_files(TRAINER),
    log:
        f"{RUN}/logs/{TRAINER}.log",
    benchmark:
        benchmark_file(TRAINER)
    # A failed try (a crash, an OOM, a kill) runs again and resumes from the newest
    # checkpoint of the work folder, which Snakemake does not delete: it is no output.
    retries: config["train_retries"]
    threads: GPU_JOB_THREADS
    resources:
        gpu=train_devices(),
    params:
        stage=TRAINER,
        files=file_options(TRAINER),
        work_dir=f"{RUN}/{TRAINER}.resume",
        # Training's progress goes to its log and, with this label, to the console.
        label=f"{{run}}/seed{{seed}} {TRAINER}",
        monitor=monitor_args,
    shell:
        f"{GPU_MONITOR} {{params.monitor}} --gpus {{resources.gpu}} --"
        f" {RUN_PY} {{params.stage}} --resume restart-on-change"
        " --stage-config {input.config} {params.files} --work-dir {params.work_dir}"
        " 2>&1 | tee {log} | sed -u 's|^|[{params.label}] |'"


for stage in STAGES:
    if stage in (FIRST, TRAINER):
        continue
    gpu = STAGES[stage]["gpu"]

    rule:
        name:
            stage
        input:
            **stage_inputs(stage),
            config=stage_config(stage),
            code=READS["code"][stage],
        output:
            **stage_outputs(stage, RUN, **shown_in_report(stage)),
            **({"gpu": monitor_files(stage)} if gpu else {}),
        log:
            f"{RUN}/logs/{stage}.log",
        benchmark:
            benchmark_file(stage)
        threads: GPU_JOB_THREADS if gpu else 1
        resources:
            gpu=int(gpu),
        params:
            stage=stage,
            files=file_options(stage),
            monitor=monitor_wrapper(stage),
        shell:
            f"{{params.monitor}}{RUN_PY} {{params.stage}} --stage-config {{input.config}}"
            " {params.files} > {log} 2>&1"
