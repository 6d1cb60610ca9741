rule evaluate:
    input:
        best=rules.train.output.best,
        summary=rules.train.output.summary,
        log=rules.train.output.log,
        manifest=rules.data.output.manifest,
        code=sources("data", "model", "testing", "utils", "training/checkpoint.py"),
    output:
        metrics=f"{RUN}/metrics.json",
        checks=f"{RUN}/quick_validation.json",
        gpu=multiext(f"{RUN}/monitor/evaluate", ".json", ".csv"),
    log:
        f"{RUN}/logs/evaluate.log",
    benchmark:
        f"{RUN}/benchmarks/evaluate.tsv"
    threads: ALL_CORES
    resources:
        gpu=1,
    params:
        settings=settings("eval"),
        args=run_args("eval", cli=["device"]),
        monitor=monitor_args,
    shell:
        "python workflow/scripts/gpu_monitor.py {params.monitor} --"
        " python project/run.py evaluate {params.args} > {log} 2>&1"


rule sample:
    input:
        best=rules.train.output.best,
        manifest=rules.data.output.manifest,
        code=sources("data", "model", "utils", "training/checkpoint.py"),
    output:
        text=report(f"{RUN}/samples.txt", category="Samples"),
        meta=f"{RUN}/samples.json",
        gpu=multiext(f"{RUN}/monitor/sample", ".json", ".csv"),
    log:
        f"{RUN}/logs/sample.log",
    benchmark:
        f"{RUN}/benchmarks/sample.tsv"
    threads: ALL_CORES
    resources:
        gpu=1,
    params:
        settings=settings("sample"),
        args=run_args("sample", cli=["device"]),
        monitor=monitor_args,
    shell:
        "python workflow/scripts/gpu_monitor.py {params.monitor} --"
        " python project/run.py sample {params.args} > {log} 2>&1"
