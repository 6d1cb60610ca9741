rule evaluate:
    input:
        config=stage_config("evaluate"),
        code=stage_code("evaluate"),
        train_ids=rules.prepare.output.train_ids,
        val_ids=rules.prepare.output.val_ids,
        vocab=rules.prepare.output.vocab,
        manifest=rules.prepare.output.manifest,
        best=rules.train.output.best,
        summary=rules.train.output.summary,
        train_log=rules.train.output.train_log,
        train_cost=rules.train.output.train_cost,
    output:
        metrics=f"{RUN}/metrics.json",
        checks=f"{RUN}/quick_validation.json",
        evaluate_cost=f"{RUN}/cost/evaluate.json",
        gpu=multiext(f"{RUN}/monitor/evaluate", ".json", ".csv"),
    log:
        f"{RUN}/logs/evaluate.log",
    benchmark:
        f"{RUN}/benchmarks/evaluate.tsv"
    threads: gpu_job_threads
    resources:
        gpu=1,
    params:
        files=file_options,
        monitor=monitor_args,
    shell:
        "python workflow/scripts/gpu_monitor.py {params.monitor} --"
        " python project/run.py evaluate --stage-config {input.config} {params.files}"
        " > {log} 2>&1"


rule sample:
    input:
        config=stage_config("sample"),
        code=stage_code("sample"),
        vocab=rules.prepare.output.vocab,
        manifest=rules.prepare.output.manifest,
        best=rules.train.output.best,
        summary=rules.train.output.summary,
    output:
        samples=report(f"{RUN}/samples.txt", category="Samples", subcategory="{run}"),
        samples_meta=f"{RUN}/samples.json",
        sample_cost=f"{RUN}/cost/sample.json",
        gpu=multiext(f"{RUN}/monitor/sample", ".json", ".csv"),
    log:
        f"{RUN}/logs/sample.log",
    benchmark:
        f"{RUN}/benchmarks/sample.tsv"
    threads: gpu_job_threads
    resources:
        gpu=1,
    params:
        files=file_options,
        monitor=monitor_args,
    shell:
        "python workflow/scripts/gpu_monitor.py {params.monitor} --"
        " python project/run.py sample --stage-config {input.config} {params.files}"
        " > {log} 2>&1"
