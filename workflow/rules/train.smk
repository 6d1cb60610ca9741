TRAIN_SECTIONS = ("seed", "device", "model", "train", "eval")


rule train:
    input:
        manifest=rules.data.output.manifest,
        code=sources("data", "model", "training", "utils"),
    output:
        summary=f"{RUN}/train_summary.json",
        log=f"{RUN}/train_log.jsonl",
        best=f"{RUN}/checkpoints/best.pt",
        last=f"{RUN}/checkpoints/last.pt",
        gpu=multiext(f"{RUN}/monitor/train", ".json", ".csv"),
    log:
        f"{RUN}/logs/train.log",
    benchmark:
        f"{RUN}/benchmarks/train.tsv"
    threads: ALL_CORES
    resources:
        gpu=1,
    params:
        settings=settings(*TRAIN_SECTIONS),
        args=run_args(*TRAIN_SECTIONS, cli=["epochs", "seed", "device"]),
        monitor=monitor_args,
    shell:
        "python workflow/scripts/gpu_monitor.py {params.monitor} --"
        " python project/run.py train {params.args} > {log} 2>&1"
