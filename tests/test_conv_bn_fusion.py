"""Folding eval BatchNorms into convolutions for prediction: same outputs, only pairs the forward confirms."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detsdk.engine.conv_bn_fusion import fuse_conv_bn
from detsdk.engine.predictor import fused_for_inference


def trained_norms(model: nn.Module) -> nn.Module:
    """Give every BatchNorm statistics and affine values other than the identity's."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            size = module.running_mean.shape
            module.running_mean.copy_(torch.randn(size, generator=generator))
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(size, generator=generator))
            module.bias.data.copy_(torch.randn(size, generator=generator))
    return model.eval()


class Block(nn.Module):
    def __init__(self, norm=nn.BatchNorm2d):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = norm(4)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class NormBeforeConv(nn.Module):
    """Registered conv then norm, run the other way round: the norm's input is not the conv's output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.conv(self.bn(x))


class SharedConv(nn.Module):
    """One convolution for two inputs, each with its own norm (RTMDet's towers across levels)."""

    def __init__(self):
        super().__init__()
        self.levels = nn.ModuleList([Block(), Block()])
        self.levels[1].conv = self.levels[0].conv

    def forward(self, x):
        return self.levels[0](x) + self.levels[1](x.flip(-1))


@pytest.mark.parametrize("model", [Block(), Block(FrozenBatchNorm2d), SharedConv(),
                                   nn.Sequential(Block(), NormBeforeConv())])
def test_folding_keeps_the_outputs_and_removes_confirmed_norms(model):
    model = trained_norms(model)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    expected = model(x)
    fused = copy.deepcopy(model)
    folded = fuse_conv_bn(fused, lambda m: m(x[:1]))
    torch.testing.assert_close(fused(x), expected, rtol=1e-5, atol=1e-5)
    norms_left = sum(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in fused.modules())
    expected_folded = {Block: 1, SharedConv: 2, nn.Sequential: 1}[type(model)]
    assert folded == expected_folded
    assert norms_left == {Block: 0, SharedConv: 0, nn.Sequential: 1}[type(model)]  # NormBeforeConv's stays


def test_training_mode_norms_are_not_folded():
    model = Block().train()
    assert fuse_conv_bn(model, lambda m: m(torch.randn(2, 3, 8, 8))) == 0
    assert isinstance(model.bn, nn.BatchNorm2d)


def test_a_detector_predicts_the_same_after_folding(tmp_path):
    from conftest import tiny_recipe

    from detsdk.engine.build import build_model

    spec = tiny_recipe(tmp_path)["model"]
    spec["box_head"]["score_thresh"] = 0.0
    torch.manual_seed(0)
    model = trained_norms(build_model(spec, 3))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20  # ResNet-18's
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(images, image_sizes=[(64, 96)] * 2)
        fused = fused_for_inference(copy.deepcopy(model), torch.device("cpu"))
        got = fused(images, image_sizes=[(64, 96)] * 2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    for a, b in zip(expected, got):
        assert len(a["boxes"]) == len(b["boxes"]) > 0
        torch.testing.assert_close(b["boxes"], a["boxes"], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(b["scores"], a["scores"], rtol=1e-4, atol=1e-4)
