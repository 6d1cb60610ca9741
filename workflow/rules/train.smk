rule train:
    input:
        **stage_inputs("train"),
        config=stage_config("train"),
        code=READS["code"]["train"],
    output:
        **stage_outputs("train", RUN),
        gpu=multiext(f"{RUN}/monitor/train", ".json", ".csv"),
    log:
        f"{RUN}/logs/train.log",
    benchmark:
        f"{RUN}/benchmarks/train.tsv"
    # A failed try (a crash, an OOM, a kill) runs again and resumes from the newest
    # checkpoint of the work folder, which Snakemake does not delete: it is no output.
    retries: config["train_retries"]
    threads: GPU_JOB_THREADS
    resources:
        gpu=train_devices(),
    params:
        work_dir=f"{RUN}/train.resume",
        # Training's progress goes to its log and, with this label, to the console.
        label="{run}/seed{seed} train",
        monitor=monitor_args,
    shell:
        "python workflow/scripts/gpu_monitor.py {params.monitor} --gpus {resources.gpu} --"
        f" python {PLAN_DIR}/run.py train --resume restart-on-change --stage-config {{input.config}}"
        f" {file_options('train')}"
        " --work-dir {params.work_dir} 2>&1 | tee {log} | sed -u 's|^|[{params.label}] |'"
