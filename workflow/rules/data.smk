rule data:
    input:
        code=sources("data", "utils"),
    output:
        train=f"{RUN}/data/train.bin",
        val=f"{RUN}/data/val.bin",
        vocab=f"{RUN}/data/vocab.json",
        manifest=f"{RUN}/data/manifest.json",
    log:
        f"{RUN}/logs/data.log",
    benchmark:
        f"{RUN}/benchmarks/data.tsv"
    params:
        settings=settings("data"),
        args=run_args("data", cli=["data_source"]),
    shell:
        "python project/run.py prepare {params.args} > {log} 2>&1"
