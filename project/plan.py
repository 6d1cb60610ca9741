"""The plan (../shared/plan.md), declared once: a character-level GPT on Tiny Shakespeare.

What the harness and the workflow know of this plan is written here and nowhere else: its
configuration (utils/config.py: the dataclasses whose defaults are the plan), its stages in
order (stages/), the figure that comparisons and searches minimise, its quick validation's
checks, and what the report shows besides the figures (the text samples).
"""

from harness.plan import Objective, Plan, Report

from .data.download import planned_source, source_override
from .stages import bench, evaluate, prepare, sample, train
from .utils.config import Config

PLAN = Plan(
    name="chargpt",
    title="a character-level GPT on Tiny Shakespeare",
    document="../shared/plan.md",
    config=Config,
    stages=(prepare.STAGE, train.STAGE, evaluate.STAGE, sample.STAGE),
    tools=(bench.STAGE,),
    objective=Objective(figure="bits_per_char", direction="minimize"),
    epochs_key="train.epochs",
    devices_key="train.devices",
    quick_validation=evaluate.print_quick_validation,
    data_source=source_override,
    source_record=lambda config: planned_source(config.data),
    report=Report(texts=("samples",)),
    cpu_preset="cpu.yaml",
    cpu_deviation="no GPU: trained on the CPU in fp32 (T5 plans bf16 on CUDA)",
)
