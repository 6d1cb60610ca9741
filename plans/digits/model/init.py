"""M4 Initialisation."""

from __future__ import annotations

from torch import nn

LINEAR_STD = 0.01  # M4: linear weights N(0, 0.01²)


def init_weights(model: nn.Module) -> None:
    """M4 Initialisation: convolution weights Kaiming-normal (fan-out, ReLU gain); linear
    weights N(0, 0.01²); biases 0; BatchNorm gain 1 and shift 0.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=LINEAR_STD)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
        else:
            continue
        if module.bias is not None:
            nn.init.zeros_(module.bias)
