"""MobileNetV3 backbone: torchvision's ``mobilenet_v3_large``/``_small`` features at each stride's last block.

Parameter names are torchvision's (``features.<i>...``), so a torchvision
classification state dict loads as it is (``classifier.*`` is skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detsdk.builtin.models.pretrained import load_pretrained
from detsdk.builtin.models.staged import (
    STAGE_STRIDES,
    StagedBackbone,
    check_stage_arguments,
    in_built_features,
    output_name,
)
from detsdk.errors import RecipeError, suggest

ARCHS = ("large", "small")
NORMS = ("frozen_bn", "bn")
# torchvision's MobileNetV3 batch norm settings; its ImageNet weights were trained with them.
BN_EPS, BN_MOMENTUM = 0.001, 0.01
COMPONENT = "backbone mobilenet_v3"


def _norm_layer(norm: str) -> Callable[[int], nn.Module]:
    if norm == "bn":
        return partial(nn.BatchNorm2d, eps=BN_EPS, momentum=BN_MOMENTUM)
    if norm == "frozen_bn":
        return partial(FrozenBatchNorm2d, eps=BN_EPS)
    raise RecipeError(
        f"{COMPONENT}: unknown norm '{norm}'{suggest(norm, NORMS)}; valid: {', '.join(NORMS)}"
    )


class MobileNetV3(StagedBackbone):
    """MobileNetV3 large/small feature extractor on torchvision's ``mobilenet_v3_large``/``_small``.

    torchvision's ``features`` are a stride-2 stem and inverted-residual blocks, four of which
    halve the resolution (to strides 4, 8, 16, 32). Stage ``k`` is the blocks from one stride
    change up to the next, the last stage ending with the final 1x1 convolution; each output is
    the last block of its stage, so the maps are the richest of each stride:

    =======  =======================  =======================
    arch     out_channels             strides
    =======  =======================  =======================
    large    ``[24, 40, 112, 960]``   ``[4, 8, 16, 32]``
    small    ``[16, 24, 48, 576]``    ``[4, 8, 16, 32]``
    =======  =======================  =======================

    Args:
        arch: ``"large"`` or ``"small"``.
        frozen_stages: ``-1`` trains everything, ``0`` freezes the stem (``features.0``), ``k``
            freezes the stem and stages ``1 .. k``: parameters get ``requires_grad=False`` and
            norm layers stay in eval mode.
        norm: ``"frozen_bn"`` (FrozenBatchNorm2d, fixed statistics and affine) or ``"bn"``
            (BatchNorm2d); both with torchvision's ``eps=0.001`` (``"bn"``: ``momentum=0.01``).
        pretrained: ``""`` for random init; a torchvision weights name of
            ``mobilenet_v3_<arch>`` (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"`` for
            large), fetched through torchvision's weights API; or the path of a local ``.pth``
            state dict (plain, or under ``"state_dict"`` or ``"model"``), read with
            ``torch.load(weights_only=True)``.
        out_indices: which stages to return, 0-based (``0``: ``"c2"``, stride 4 .. ``3``:
            ``"c5"``, stride 32). ``[1, 2, 3]`` gives strides 8/16/32 (as in torchvision's and
            MMDetection's light detectors); with an ``fpn`` neck set ``num_outs = 4`` and give
            ``rpn_head`` four ``anchor_sizes`` levels.

    ``forward(images[B,3,H,W])`` returns ``{"c2": ..., "c5": ...}`` fine to coarse.

    >>> MobileNetV3(arch="small", out_indices=[1, 2, 3]).out_channels  # doctest: +SKIP
    [24, 48, 576]
    """

    def __init__(
        self,
        arch: str = "large",
        frozen_stages: int = -1,
        norm: str = "frozen_bn",
        pretrained: str = "",
        out_indices: list[int] = [0, 1, 2, 3],  # noqa: B006 (never mutated; shown as the recipe default)
    ):
        super().__init__()
        if arch not in ARCHS:
            raise RecipeError(
                f"{COMPONENT}: unknown arch {arch!r}{suggest(str(arch), ARCHS)}; valid: {', '.join(ARCHS)}"
            )
        indices = check_stage_arguments(COMPONENT, frozen_stages, out_indices)
        self.model_name = f"mobilenet_v3_{arch}"
        net = torchvision.models.get_model(self.model_name, weights=None, norm_layer=_norm_layer(norm))
        # The blocks that halve the resolution; torchvision's detection backbones find them the same way.
        downsampling = [i for i, block in enumerate(net.features) if getattr(block, "_is_cn", False)]
        if len(downsampling) != len(STAGE_STRIDES):
            raise RuntimeError(f"{self.model_name}: expected 4 downsampling blocks, found {downsampling}")
        # Stage k (1-based) is features[starts[k-1] : ends[k-1] + 1]; stage 1 also holds the
        # stride-2 blocks between the stem and the first downsampling block (large has one).
        self._ends = [i - 1 for i in downsampling[1:]] + [len(net.features) - 1]
        self._starts = [1] + downsampling[1:]
        self.arch = arch
        self.frozen_stages = frozen_stages
        self.out_indices = indices
        # Blocks past the last returned stage are not built: no unused parameters under DDP.
        self.features = net.features[: self._ends[indices[-1]] + 1]
        self.out_channels = [self.features[self._ends[i]].out_channels for i in indices]
        self.strides = [STAGE_STRIDES[i] for i in indices]
        if pretrained:
            self.load_pretrained(pretrained)
        self.freeze_stages()

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """Modules of stage ``stage``: 0 is the stem (``features.0``), ``k`` the blocks of stride ``2**(k+1)``."""
        if stage == 0:
            return [self.features[0]]
        start, end = self._starts[stage - 1], self._ends[stage - 1]
        return list(self.features[start : end + 1]) if end < len(self.features) else []

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps of the selected stages, fine to coarse, named ``c2`` .. ``c5``."""
        outputs = {}
        returned = {self._ends[i]: output_name(i) for i in self.out_indices}
        x = images
        for i, block in enumerate(self.features):
            x = block(x)
            if i in returned:
                outputs[returned[i]] = x
        return outputs

    def load_pretrained(self, pretrained: str) -> None:
        """Load a torchvision weights name or a local state-dict file (see the class docstring)."""
        built = len(self.features)
        load_pretrained(
            self, pretrained, component=COMPONENT, model_name=self.model_name,
            skip=lambda key: not in_built_features(key, built),
        )

