# One prepare job per data configuration (results/data/<key>/), shared by every run with it.
rule prepare:
    input:
        config=f"{DATA}/config/prepare.json",
        source=f"{DATA}/source.json",
        code=READS["code"]["prepare"],
    output:
        **stage_outputs("prepare", DATA),
    log:
        f"{DATA}/logs/prepare.log",
    benchmark:
        f"{DATA}/benchmarks/prepare.tsv"
    shell:
        f"python {PLAN_DIR}/run.py prepare --stage-config {{input.config}} --source {{input.source:q}}"
        f" {file_options('prepare')}"
        " > {log} 2>&1"
