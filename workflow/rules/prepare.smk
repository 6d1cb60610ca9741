rule prepare:
    input:
        config=stage_config("prepare"),
        code=stage_code("prepare"),
    output:
        train_ids=f"{RUN}/data/train.bin",
        val_ids=f"{RUN}/data/val.bin",
        vocab=f"{RUN}/data/vocab.json",
        manifest=f"{RUN}/data/manifest.json",
        prepare_cost=f"{RUN}/cost/prepare.json",
    log:
        f"{RUN}/logs/prepare.log",
    benchmark:
        f"{RUN}/benchmarks/prepare.tsv"
    params:
        files=file_options,
    shell:
        "python project/run.py prepare --stage-config {input.config} {params.files}"
        " > {log} 2>&1"
