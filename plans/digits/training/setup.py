"""A run's Trainer from its configuration and the prepared data (the train stage's, and the
tests')."""

from __future__ import annotations

from pathlib import Path

from harness.sections import as_mapping
from harness.seed import seed_everything
from torch import nn

from ..data.batches import TrainBatches
from ..data.dataset import PreparedDigits
from ..model.interface import build_model
from ..testing.scoring import loss_and_accuracy, split_logits
from ..utils.config import Config
from .trainer import Trainer, Validation


def build_trainer(config: Config, data: PreparedDigits, work_dir: Path) -> Trainer:
    """T8: one seed drives Python, NumPy and PyTorch, set before the model is made (M4),
    so that two runs with the same seed match bit for bit on the CPU. The model goes where
    the data is; validation is D5 on the validation split.
    """
    seed_everything(config.seed)
    device = data.train.images.device
    model = build_model(config.model).to(device)
    batches = TrainBatches(  # D4
        data.train.images,
        data.train.labels,
        config.train.batch_size,
        config.seed,
        config.data.augment,
        data.normalisation.blank,
    )

    def validate(trained: nn.Module) -> Validation:
        logits = split_logits(trained, data.val.images)  # (90, 10)
        return Validation(*loss_and_accuracy(logits, data.val.labels))

    # What a checkpoint must match to be resumed: the settings and the data.
    identity = {
        "config": as_mapping(config),
        "data": {key: data.manifest[key] for key in ("source_sha256", "normalisation")},
    }
    return Trainer(model, batches, config.train, validate, work_dir, identity)
