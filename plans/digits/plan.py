"""The plan's declaration (harness/plan.py): its configuration, stages, objective, quick
validation and what the report shows. Declaring it imports no torch.
"""

from __future__ import annotations

from harness.plan import Objective, Plan, Report

from .data.source import data_source_overrides, source_record
from .stages import evaluate, prepare, train
from .testing.checks import print_quick_validation
from .utils.config import Config

PLAN = Plan(
    name="digits",
    title="A small CNN on the optdigits 8×8 handwritten digits",
    document="../shared/plan-digits.md",
    config=Config,
    stages=(prepare.STAGE, train.STAGE, evaluate.STAGE),
    objective=Objective(figure="val_accuracy", direction="maximize"),
    epochs_key="train.epochs",
    quick_validation=print_quick_validation,
    data_source=data_source_overrides,
    source_record=source_record,
    devices_key=None,  # one device: no DistributedDataParallel
    report=Report(pictures=("confusion", "hardest")),
)
