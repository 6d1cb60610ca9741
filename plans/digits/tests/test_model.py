"""M1-M4: the models against their definitions, and the model section's checks."""

from __future__ import annotations

import math

import pytest
import torch
from harness.sections import ConfigError
from torch import nn

from digits.model.block import ConvBlock
from digits.model.cnn import DigitCNN
from digits.model.config import ModelConfig
from digits.model.interface import DigitModel, build_model
from digits.model.linear import LinearClassifier


def test_the_plans_cnn_has_67754_parameters() -> None:
    model = build_model(ModelConfig())
    assert isinstance(model, DigitCNN) and isinstance(model, DigitModel)
    assert model.num_parameters() == 67_754


def test_the_cnn_maps_images_to_ten_logits_through_the_planned_shapes() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()
    images = torch.randn(5, 1, 8, 8)
    assert model.features(images).shape == (5, 64, 2, 2)
    assert model(images).shape == (5, 10)


def test_a_conv_block_is_conv_without_bias_then_batchnorm_then_relu() -> None:
    torch.manual_seed(0)
    block = ConvBlock(3, 4).eval()
    assert block.conv.bias is None and block.conv.padding == (1, 1)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(block(x), torch.relu(block.norm(block.conv(x))))
    assert (block(x) >= 0).all() and block(x).shape == (2, 4, 8, 8)


def test_the_linear_architecture_is_logistic_regression_on_the_pixels() -> None:
    model = build_model(ModelConfig(arch="linear"))
    assert isinstance(model, LinearClassifier) and isinstance(model, DigitModel)
    assert model.num_parameters() == 64 * 10 + 10
    images = torch.randn(3, 1, 8, 8)
    assert torch.equal(model(images), model.head(images.reshape(3, 64)))


def test_initialisation_follows_m4() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(channels=64, deep_channels=128))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.out_channels * 9
            assert module.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
        if isinstance(module, nn.BatchNorm2d):
            assert (module.weight == 1).all() and (module.bias == 0).all()
    head = model.head
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert (head.bias == 0).all()


def test_the_dropout_before_the_head_is_the_plans() -> None:
    assert build_model(ModelConfig()).dropout.p == 0.3


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (ModelConfig(arch="mlp"), "model.arch"),
        (ModelConfig(channels=0), "model.channels"),
        (ModelConfig(dropout=1.0), "model.dropout"),
    ],
)
def test_a_bad_model_setting_names_its_key(config: ModelConfig, key: str) -> None:
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        config.check()
