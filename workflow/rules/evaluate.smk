rule evaluate:
    input:
        **stage_inputs("evaluate"),
        config=stage_config("evaluate"),
        code=READS["code"]["evaluate"],
    output:
        **stage_outputs("evaluate", RUN),
        gpu=multiext(f"{RUN}/monitor/evaluate", ".json", ".csv"),
    log:
        f"{RUN}/logs/evaluate.log",
    benchmark:
        f"{RUN}/benchmarks/evaluate.tsv"
    threads: GPU_JOB_THREADS
    resources:
        gpu=1,
    params:
        monitor=monitor_args,
    shell:
        "python workflow/scripts/gpu_monitor.py {params.monitor} --"
        f" python {PLAN_DIR}/run.py evaluate --stage-config {{input.config}}"
        f" {file_options('evaluate')}"
        " > {log} 2>&1"


rule sample:
    input:
        **stage_inputs("sample"),
        config=stage_config("sample"),
        code=READS["code"]["sample"],
    output:
        **stage_outputs(
            "sample",
            RUN,
            samples=lambda path: report(path, category="Samples", subcategory="{run}"),
        ),
        gpu=multiext(f"{RUN}/monitor/sample", ".json", ".csv"),
    log:
        f"{RUN}/logs/sample.log",
    benchmark:
        f"{RUN}/benchmarks/sample.tsv"
    threads: GPU_JOB_THREADS
    resources:
        gpu=1,
    params:
        monitor=monitor_args,
    shell:
        "python workflow/scripts/gpu_monitor.py {params.monitor} --"
        f" python {PLAN_DIR}/run.py sample --stage-config {{input.config}}"
        f" {file_options('sample')}"
        " > {log} 2>&1"
