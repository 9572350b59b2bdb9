"""The building blocks of CSPNeXt and its PAFPN (RTMDet), named as MMDetection's so its weights load as they are.

``ConvModule`` is MMCV's conv → BN → SiLU (submodules ``conv``, ``bn``, ``activate``),
``DepthwiseSeparableConvModule`` its depthwise then pointwise pair, ``CSPLayer`` the
cross-stage-partial layer of ``CSPNeXtBlock`` s with optional channel attention and
``SPPBottleneck`` the spatial pyramid pooling of the last backbone stage. BatchNorm uses
MMDetection's RTMDet settings (momentum 0.03, eps 0.001; the same momentum convention as
PyTorch's). Convolutions start as MMCV's ``ConvModule.init_weights`` leaves them (Kaiming
normal, fan-out, ReLU gain; zero bias).
"""

from __future__ import annotations

import torch
from torch import nn

BN_MOMENTUM = 0.03
BN_EPS = 0.001


class ConvModule(nn.Module):
    """``conv`` (no bias) → ``bn`` → ``activate`` (SiLU), as MMCV's ``ConvModule`` with BN and SiLU.

    >>> ConvModule(3, 16, 3, stride=2)(torch.zeros(1, 3, 32, 32)).shape  # doctest: +SKIP
    torch.Size([1, 16, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM, eps=BN_EPS)
        self.activate = nn.SiLU(inplace=True)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv, norm, activation."""
        return self.activate(self.bn(self.conv(x)))


class DepthwiseSeparableConvModule(nn.Module):
    """A depthwise ``kernel_size`` conv then a pointwise 1×1 conv, each a ``ConvModule``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, kernel_size, stride, groups=in_channels)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """depthwise, then pointwise."""
        return self.pointwise_conv(self.depthwise_conv(x))


def conv_module(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, depthwise: bool = False):
    """A ``ConvModule``, or a ``DepthwiseSeparableConvModule`` when ``depthwise``."""
    if depthwise:
        return DepthwiseSeparableConvModule(in_channels, out_channels, kernel_size, stride)
    return ConvModule(in_channels, out_channels, kernel_size, stride)


class CSPNeXtBlock(nn.Module):
    """3×3 conv then a depthwise-separable 5×5 conv, with a residual when the channels match."""

    def __init__(self, in_channels: int, out_channels: int, add_identity: bool = True, depthwise: bool = False):
        super().__init__()
        self.conv1 = conv_module(in_channels, out_channels, 3, depthwise=depthwise)
        self.conv2 = DepthwiseSeparableConvModule(out_channels, out_channels, 5)
        self.add_identity = add_identity and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Two convs, plus the input when ``add_identity``."""
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class ChannelAttention(nn.Module):
    """Squeeze-excite without reduction: global average, a 1×1 conv with bias, hard sigmoid, scale."""

    def __init__(self, channels: int):
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.act = nn.Hardsigmoid(inplace=True)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The input scaled per channel."""
        # The pooled mean in fp32 (MMDetection disables autocast for it).
        pooled = self.global_avgpool(x.float()).to(x.dtype)
        return x * self.act(self.fc(pooled))


class CSPLayer(nn.Module):
    """Cross-stage partial layer: a main branch through ``num_blocks`` blocks and a short branch, concatenated.

    Args:
        in_channels, out_channels: the layer's channels.
        expand_ratio: hidden channels of each branch, as a fraction of ``out_channels``.
        num_blocks: ``CSPNeXtBlock`` s on the main branch.
        add_identity: residuals inside the blocks.
        depthwise: depthwise-separable first convs in the blocks.
        channel_attention: a ``ChannelAttention`` on the concatenation (the backbone's stages).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: float = 0.5,
        num_blocks: int = 1,
        add_identity: bool = True,
        depthwise: bool = False,
        channel_attention: bool = False,
    ):
        super().__init__()
        mid_channels = int(out_channels * expand_ratio)
        self.main_conv = ConvModule(in_channels, mid_channels, 1)
        self.short_conv = ConvModule(in_channels, mid_channels, 1)
        self.final_conv = ConvModule(2 * mid_channels, out_channels, 1)
        self.blocks = nn.Sequential(
            *(CSPNeXtBlock(mid_channels, mid_channels, add_identity, depthwise) for _ in range(num_blocks))
        )
        self.attention = ChannelAttention(2 * mid_channels) if channel_attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Both branches, concatenated main first, attention, then the final 1×1 conv."""
        merged = torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1)
        if self.attention is not None:
            merged = self.attention(merged)
        return self.final_conv(merged)


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling: a 1×1 conv, max-pools of several sizes concatenated, a 1×1 conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        mid_channels = in_channels // 2
        self.conv1 = ConvModule(in_channels, mid_channels, 1)
        self.poolings = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = ConvModule(mid_channels * (len(kernel_sizes) + 1), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool at every size, concatenate with the input, mix."""
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.poolings], dim=1))
