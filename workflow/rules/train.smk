rule train:
    input:
        config=stage_config("train"),
        code=stage_code("train"),
        train_ids=rules.prepare.output.train_ids,
        val_ids=rules.prepare.output.val_ids,
        vocab=rules.prepare.output.vocab,
        manifest=rules.prepare.output.manifest,
    output:
        summary=f"{RUN}/train_summary.json",
        train_log=f"{RUN}/train_log.jsonl",
        best=f"{RUN}/checkpoints/best.pt",
        last=f"{RUN}/checkpoints/last.pt",
        train_cost=f"{RUN}/cost/train.json",
        gpu=multiext(f"{RUN}/monitor/train", ".json", ".csv"),
    log:
        f"{RUN}/logs/train.log",
    benchmark:
        f"{RUN}/benchmarks/train.tsv"
    # A failed try (a crash, an OOM, a kill) runs again and resumes from the newest
    # checkpoint of the work folder, which Snakemake does not delete: it is no output.
    retries: config["train_retries"]
    threads: gpu_job_threads
    resources:
        gpu=train_devices,
    params:
        files=file_options,
        work_dir=f"{RUN}/train.resume",
        # Training's progress goes to its log and, with this label, to the console.
        label="{run}/seed{seed} train",
        monitor=monitor_args,
    shell:
        "python workflow/scripts/gpu_monitor.py {params.monitor} --gpus {resources.gpu} --"
        " python project/run.py train --resume restart-on-change --stage-config {input.config} {params.files}"
        " --work-dir {params.work_dir} 2>&1 | tee {log} | sed -u 's|^|[{params.label}] |'"
