# `snakemake` in the repository's root reads this file. The workflow is workflow/Snakefile
# (the layout of the Snakemake workflow catalog; the file that another workflow includes as a
# module, docs/snakemake-module.md), included here with its default target, `rule all`,
# which the `include:` keyword would drop.

workflow.include("workflow/Snakefile", overwrite_default_target=True)
