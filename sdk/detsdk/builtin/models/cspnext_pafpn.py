"""CSPNeXtPAFPN: RTMDet's neck (MMDetection's ``CSPNeXtPAFPN``), a top-down then bottom-up path of CSP layers."""

from __future__ import annotations

import torch
from torch import nn

from detsdk.builtin.models.csp_layers import ConvModule, CSPLayer, conv_module
from detsdk.errors import RecipeError


class CSPNeXtPAFPN(nn.Module):
    """Path aggregation FPN with CSP layers, named as MMDetection's so its weights load unchanged.

    Args:
        in_channels: the backbone's channels, fine to coarse (injected by the detector).
        out_channels: channels of every output map (RTMDet-tiny 96, s 128, m 192, l 256, x 320).
        num_csp_blocks: blocks per CSP layer (tiny and s 1, m 2, l 3, x 4).
        expand_ratio: the CSP layers' hidden channel ratio.
        depthwise: depthwise-separable down-sampling and output convs.

    ``forward(features)`` takes the backbone's dict (``c3``..``c5``) and returns
    ``{"p3": ..., "p4": ..., "p5": ...}``, one map per input, same strides.
    """

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int = 256,
        num_csp_blocks: int = 3,
        expand_ratio: float = 0.5,
        depthwise: bool = False,
    ):
        super().__init__()
        if len(in_channels) < 2:
            raise RecipeError(f"neck cspnext_pafpn: needs at least two input levels, got in_channels {in_channels!r}")
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce_layers = nn.ModuleList()
        self.top_down_blocks = nn.ModuleList()
        for idx in range(len(in_channels) - 1, 0, -1):
            self.reduce_layers.append(ConvModule(in_channels[idx], in_channels[idx - 1], 1))
            self.top_down_blocks.append(
                CSPLayer(in_channels[idx - 1] * 2, in_channels[idx - 1], expand_ratio, num_csp_blocks, False, depthwise)
            )
        self.downsamples = nn.ModuleList()
        self.bottom_up_blocks = nn.ModuleList()
        for idx in range(len(in_channels) - 1):
            self.downsamples.append(conv_module(in_channels[idx], in_channels[idx], 3, stride=2, depthwise=depthwise))
            self.bottom_up_blocks.append(
                CSPLayer(in_channels[idx] * 2, in_channels[idx + 1], expand_ratio, num_csp_blocks, False, depthwise)
            )
        self.out_convs = nn.ModuleList(conv_module(c, out_channels, 3, depthwise=depthwise) for c in in_channels)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Top-down (reduce, upsample, CSP), bottom-up (downsample, CSP), then one 3×3 conv per level."""
        names = list(features)
        inputs = list(features.values())
        if len(inputs) != len(self.in_channels):
            raise RecipeError(
                f"neck cspnext_pafpn: built for {len(self.in_channels)} levels, got {len(inputs)} feature maps"
            )
        levels = len(inputs)
        inner = [inputs[-1]]
        for step, idx in enumerate(range(levels - 1, 0, -1)):
            high = self.reduce_layers[step](inner[0])
            inner[0] = high
            inner.insert(0, self.top_down_blocks[step](torch.cat([self.upsample(high), inputs[idx - 1]], 1)))
        outs = [inner[0]]
        for idx in range(levels - 1):
            down = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](torch.cat([down, inner[idx + 1]], 1)))
        return {
            name.replace("c", "p", 1): conv(out) for name, conv, out in zip(names, self.out_convs, outs)
        }
