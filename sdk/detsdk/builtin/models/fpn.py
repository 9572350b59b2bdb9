"""Feature Pyramid Network neck on torchvision.ops.FeaturePyramidNetwork."""

from __future__ import annotations

import re
from collections import OrderedDict

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from detsdk.errors import RecipeError, suggest

EXTRAS = ("maxpool", "p6p7", "p6p7_on_p5")
NORMS = ("none", "bn", "gn")
GN_GROUPS = 32


class FPN(nn.Module):
    """FPN (Lin et al. 2017), MMDetection's ``FPN``: top-down pyramid plus optional extra levels.

    Args:
        in_channels: channels of each input map, fine to coarse (the engine passes the
            backbone's ``out_channels``).
        out_channels: channels of every output map.
        num_outs: number of output maps: the used input maps plus the extra levels.
        start_level: index of the first input map used (MMDetection's ``start_level``):
            ``1`` on ResNet's c2-c5 builds the pyramid on c3-c5, as RetinaNet and FCOS do.
        extra: how levels above the coarsest input are made:
            ``"maxpool"``: at most one, by stride-2 subsampling of the coarsest output
            (torchvision's ``LastLevelMaxPool``; Faster R-CNN's P6);
            ``"p6p7"``: two, P6 a stride-2 3x3 conv on the coarsest *input* (C5) and P7 one on
            ReLU(P6) (torchvision's ``LastLevelP6P7(C5 channels, out)``, MMDetection's
            ``add_extra_convs="on_input"``);
            ``"p6p7_on_p5"``: the same convs on the coarsest *output* (P5) (torchvision's
            ``retinanet_resnet50_fpn`` / ``fcos_resnet50_fpn``, MMDetection's ``"on_output"``).
        norm: normalization after each lateral and output conv (which then has no bias):
            ``"none"``, ``"bn"`` (BatchNorm2d, torchvision's ``fasterrcnn_resnet50_fpn_v2``) or
            ``"gn"`` (GroupNorm, 32 groups, MMDetection's ``norm_cfg=dict(type='GN')``). The extra
            levels' convs have none.

    Input ``{"c2": ..., "c5": ...}`` gives ``{"p2": ..., "p5": ..., "p6": ...}``: ``cN``
    becomes ``pN`` and extra levels continue the numbering (other input names get a
    ``p_`` prefix and extra levels are ``"pool"``, ``"pool2"``). ``strides`` assumes the
    coarsest input has stride 32, as ResNet's ``c5``: ``[4, 8, 16, 32, 64]`` for c2-c5 and
    five outputs, ``[8, 16, 32, 64, 128]`` for c3-c5 with ``extra = "p6p7"``.

    Parameter names are torchvision's (``fpn.inner_blocks``, ``fpn.layer_blocks``,
    ``fpn.extra_blocks.p6``), the used input maps numbered from 0.
    """

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int = 256,
        num_outs: int = 5,
        start_level: int = 0,
        extra: str = "maxpool",
        norm: str = "none",
    ):
        super().__init__()
        if norm not in NORMS:
            raise RecipeError(f"neck fpn: unknown norm '{norm}'{suggest(str(norm), NORMS)}; valid: {', '.join(NORMS)}")
        if extra not in EXTRAS:
            raise RecipeError(
                f"neck fpn: unknown extra '{extra}'{suggest(str(extra), EXTRAS)}; valid: {', '.join(EXTRAS)}"
            )
        if not isinstance(start_level, int) or not 0 <= start_level < len(in_channels):
            raise RecipeError(
                f"neck fpn: start_level must be an input index from 0 to {len(in_channels) - 1}, got {start_level!r}"
            )
        used = list(in_channels)[start_level:]
        levels = len(used)
        if extra == "maxpool" and num_outs not in (levels, levels + 1):
            raise RecipeError(
                f"neck fpn: num_outs must be {levels} or {levels + 1} for {levels} input maps, got {num_outs!r}"
            )
        if extra != "maxpool" and num_outs != levels + 2:
            raise RecipeError(
                f"neck fpn: extra = '{extra}' adds P6 and P7 to {levels} input maps, so num_outs must be "
                f"{levels + 2}, got {num_outs!r}"
            )
        extra_blocks = None
        if extra == "maxpool" and num_outs == levels + 1:
            extra_blocks = LastLevelMaxPool()
        elif extra != "maxpool":
            extra_blocks = LastLevelP6P7(used[-1] if extra == "p6p7" else out_channels, out_channels)
            # torchvision picks P5 whenever the channel counts agree; the recipe decides here.
            extra_blocks.use_P5 = extra == "p6p7_on_p5"
        if norm == "gn" and out_channels % GN_GROUPS:
            raise RecipeError(f"neck fpn: norm 'gn' needs out_channels divisible by {GN_GROUPS}, got {out_channels!r}")
        norm_layer = {
            "none": None,
            "bn": nn.BatchNorm2d,
            "gn": lambda channels: nn.GroupNorm(GN_GROUPS, channels),
        }[norm]
        self.fpn = FeaturePyramidNetwork(used, out_channels, extra_blocks=extra_blocks, norm_layer=norm_layer)
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.start_level = start_level
        self.extra = extra
        self.strides = [32 // 2 ** (levels - 1 - i) for i in range(levels)]
        self.strides += [32 * 2 ** (i + 1) for i in range(num_outs - levels)]

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pyramid maps, fine to coarse, each with ``out_channels`` channels."""
        names = list(features)[self.start_level :]
        # Index keys, so that input names never clash with the extra blocks' own ("p6", "pool").
        outputs = self.fpn(OrderedDict((str(i), features[name]) for i, name in enumerate(names)))
        return dict(zip(_output_names(names, len(outputs)), outputs.values()))


def _output_names(input_names: list[str], count: int) -> list[str]:
    names = []
    for name in input_names:
        match = re.fullmatch(r"c(\d+)", name)
        names.append(f"p{match.group(1)}" if match else f"p_{name}")
    last = re.fullmatch(r"p(\d+)", names[-1])
    for i in range(count - len(names)):
        names.append(f"p{int(last.group(1)) + i + 1}" if last else "pool" + (str(i + 1) if i else ""))
    return names
