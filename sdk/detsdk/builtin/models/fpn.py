"""Feature Pyramid Network neck on torchvision.ops.FeaturePyramidNetwork."""

from __future__ import annotations

import re

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from detsdk.errors import RecipeError


class FPN(nn.Module):
    """FPN (Lin et al. 2017), MMDetection's ``FPN`` without extra convs.

    Args:
        in_channels: channels of each input map, fine to coarse (the engine passes the
            backbone's ``out_channels``).
        out_channels: channels of every output map.
        num_outs: number of output maps: ``len(in_channels)``, or one more, made by
            stride-2 subsampling of the coarsest (torchvision's ``LastLevelMaxPool``).

    Input ``{"c2": ..., "c5": ...}`` gives ``{"p2": ..., "p5": ..., "p6": ...}``: ``cN``
    becomes ``pN`` and the extra level is ``p<N+1>`` (other input names get a ``p_``
    prefix and the extra level is ``"pool"``). ``strides`` assumes the coarsest input
    has stride 32, as ResNet's ``c5``: ``[4, 8, 16, 32, 64]`` for c2-c5 and five outputs.
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256, num_outs: int = 5):
        super().__init__()
        levels = len(in_channels)
        if num_outs not in (levels, levels + 1):
            raise RecipeError(
                f"neck fpn: num_outs must be {levels} or {levels + 1} for {levels} input maps, got {num_outs!r}"
            )
        extra = LastLevelMaxPool() if num_outs == levels + 1 else None
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=extra)
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.strides = [32 // 2 ** (levels - 1 - i) for i in range(levels)] + ([64] if extra else [])

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pyramid maps, fine to coarse, each with ``out_channels`` channels."""
        outputs = self.fpn(dict(features))
        names = _output_names(list(features), len(outputs))
        return dict(zip(names, outputs.values()))


def _output_names(input_names: list[str], count: int) -> list[str]:
    names = []
    for name in input_names:
        match = re.fullmatch(r"c(\d+)", name)
        names.append(f"p{match.group(1)}" if match else f"p_{name}")
    if count > len(names):
        match = re.fullmatch(r"p(\d+)", names[-1])
        names.append(f"p{int(match.group(1)) + 1}" if match else "pool")
    return names
