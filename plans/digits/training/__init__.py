"""T1–T8: the loss, the optimiser and its schedule, checkpoints and the training loop."""
