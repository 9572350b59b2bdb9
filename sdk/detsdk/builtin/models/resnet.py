"""ResNet and ResNeXt backbones: torchvision's ResNet blocks, returning the c2-c5 feature maps.

Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1`` .. ``layer4``),
so a torchvision classification state dict loads as it is (``fc.*`` is skipped).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet
from torchvision.ops import FrozenBatchNorm2d

from detsdk.builtin.models.pretrained import load_pretrained
from detsdk.builtin.models.staged import STAGE_STRIDES, StagedBackbone, check_stage_arguments, output_name
from detsdk.errors import RecipeError, suggest

# depth -> (block, blocks per stage)
DEPTHS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
}
# (depth, groups, width_per_group) of the ResNeXts torchvision defines (and has ImageNet weights for)
RESNEXTS = [(50, 32, 4), (101, 32, 8), (101, 64, 4)]
NORMS = ("bn", "frozen_bn", "gn")
GN_GROUPS = 32

__all__ = ["DEPTHS", "GN_GROUPS", "NORMS", "RESNEXTS", "STAGE_STRIDES", "ResNeXt", "ResNet", "norm_layer"]


def norm_layer(norm: str, component: str = "backbone resnet") -> Callable[[int], nn.Module]:
    """The normalization layer factory for ``norm``: ``"bn"``, ``"frozen_bn"`` or ``"gn"`` (32 groups)."""
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(GN_GROUPS, channels)
    raise RecipeError(f"{component}: unknown norm '{norm}'{suggest(norm, NORMS)}; valid: {', '.join(NORMS)}")


class _ResNetFamily(StagedBackbone):
    """The body shared by ResNet and ResNeXt: torchvision's ``ResNet`` with ``groups`` and ``width_per_group``."""

    def __init__(
        self,
        *,
        component: str,
        model_name: str,
        depth: int,
        groups: int,
        width_per_group: int,
        frozen_stages: int,
        norm: str,
        pretrained: str,
        out_indices: list[int],
    ):
        super().__init__()
        indices = check_stage_arguments(component, frozen_stages, out_indices)
        block, layers = DEPTHS[depth]
        net = TorchvisionResNet(
            block, layers, groups=groups, width_per_group=width_per_group, norm_layer=norm_layer(norm, component)
        )
        self.component = component
        self.model_name = model_name
        self.depth = depth
        self.frozen_stages = frozen_stages
        self.out_indices = indices
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        # Stages past the last returned one are not built: no unused parameters under DDP.
        self.num_stages = indices[-1] + 1
        for i in range(1, self.num_stages + 1):
            setattr(self, f"layer{i}", getattr(net, f"layer{i}"))
        self.out_channels = [64 * 2**i * block.expansion for i in indices]
        self.strides = [STAGE_STRIDES[i] for i in indices]
        if pretrained:
            self.load_pretrained(pretrained)
        self.freeze_stages()

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """Modules of stage ``stage``: 0 is the stem (``conv1``, ``bn1``), ``k`` is ``layer<k>``."""
        if stage == 0:
            return [self.conv1, self.bn1]
        return [getattr(self, f"layer{stage}")] if stage <= self.num_stages else []

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps of the selected stages, fine to coarse, named ``c2`` .. ``c5``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        outputs = {}
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.out_indices:
                outputs[output_name(i)] = x
        return outputs

    def load_pretrained(self, pretrained: str) -> None:
        """Load a torchvision weights name or a local state-dict file (see the class docstring)."""
        unbuilt = tuple(f"layer{i}." for i in range(self.num_stages + 1, 5))
        load_pretrained(
            self, pretrained, component=self.component, model_name=self.model_name,
            skip=lambda key: key.startswith(("fc.", *unbuilt)),
        )


class ResNet(_ResNetFamily):
    """ResNet 18/34/50/101 feature extractor (MMDetection's ``ResNet``, on torchvision's blocks).

    Args:
        depth: 18, 34, 50 or 101.
        frozen_stages: ``-1`` trains everything, ``0`` freezes the stem (``conv1``, ``bn1``),
            ``k`` freezes the stem and ``layer1`` .. ``layer<k>``: their parameters get
            ``requires_grad=False`` and their norm layers stay in eval mode.
        norm: ``"bn"`` (BatchNorm2d), ``"frozen_bn"`` (FrozenBatchNorm2d, fixed statistics
            and affine) or ``"gn"`` (GroupNorm with 32 groups).
        pretrained: ``""`` for random init; a torchvision weights name (``"DEFAULT"``,
            ``"IMAGENET1K_V1"``, ``"ResNet50_Weights.IMAGENET1K_V2"``), fetched through
            torchvision's weights API (cached under ``$TORCH_HOME/hub/checkpoints``); or the
            path of a local ``.pth``/``.pt`` state dict (plain, or under ``"state_dict"`` or
            ``"model"``), read with ``torch.load(weights_only=True)``.
        out_indices: which stages to return, 0-based as in MMDetection (``0`` is ``layer1``,
            returned as ``"c2"``, stride 4; ``3`` is ``layer4``, ``"c5"``, stride 32).

    ``forward(images[B,3,H,W])`` returns ``{"c2": ..., "c3": ..., "c4": ..., "c5": ...}``, fine
    to coarse; ``out_channels`` and ``strides`` list each returned map's channels and stride.

    >>> backbone = ResNet(depth=18, out_indices=[1, 2, 3])  # doctest: +SKIP
    >>> backbone.out_channels, backbone.strides  # doctest: +SKIP
    ([128, 256, 512], [8, 16, 32])
    """

    def __init__(
        self,
        depth: int = 50,
        frozen_stages: int = 1,
        norm: str = "frozen_bn",
        pretrained: str = "",
        out_indices: list[int] = [0, 1, 2, 3],  # noqa: B006 (never mutated; shown as the recipe default)
    ):
        if depth not in DEPTHS:
            raise RecipeError(
                f"backbone resnet: unsupported depth {depth!r}; valid: {', '.join(map(str, DEPTHS))}"
            )
        super().__init__(
            component="backbone resnet", model_name=f"resnet{depth}", depth=depth, groups=1, width_per_group=64,
            frozen_stages=frozen_stages, norm=norm, pretrained=pretrained, out_indices=out_indices,
        )


class ResNeXt(_ResNetFamily):
    """ResNeXt 50-32x4d, 101-32x8d, 101-64x4d feature extractor (MMDetection's ``ResNeXt``, torchvision's blocks).

    ResNet's bottleneck with grouped 3x3 convolutions: ``groups`` groups of
    ``width_per_group`` channels each in ``layer1`` (doubling every stage). Outputs, names
    and parameter names are ResNet's, so torchvision's ``resnext*`` weights load.

    Args:
        depth: 50 or 101.
        groups: number of convolution groups (MMDetection's ``groups``).
        width_per_group: channels per group in ``layer1`` (MMDetection's ``base_width``).
            ``(depth, groups, width_per_group)`` must be one of torchvision's models:
            ``(50, 32, 4)``, ``(101, 32, 8)``, ``(101, 64, 4)``.
        frozen_stages, norm, pretrained, out_indices: as for ``resnet``; ``pretrained``
            weights names are those of ``resnext50_32x4d`` and so on (``"DEFAULT"``,
            ``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``).

    ``out_channels`` is ``[256, 512, 1024, 2048]`` and ``strides`` ``[4, 8, 16, 32]`` for all
    four stages.

    >>> ResNeXt(depth=101, groups=32, width_per_group=8, pretrained="DEFAULT")  # doctest: +SKIP
    """

    def __init__(
        self,
        depth: int = 50,
        groups: int = 32,
        width_per_group: int = 4,
        frozen_stages: int = 1,
        norm: str = "frozen_bn",
        pretrained: str = "",
        out_indices: list[int] = [0, 1, 2, 3],  # noqa: B006 (never mutated; shown as the recipe default)
    ):
        if (depth, groups, width_per_group) not in RESNEXTS:
            valid = ", ".join(f"depth={d} groups={g} width_per_group={w}" for d, g, w in RESNEXTS)
            raise RecipeError(
                f"backbone resnext: unsupported depth={depth!r} groups={groups!r} "
                f"width_per_group={width_per_group!r}; valid: {valid}"
            )
        super().__init__(
            component="backbone resnext", model_name=f"resnext{depth}_{groups}x{width_per_group}d", depth=depth,
            groups=groups, width_per_group=width_per_group, frozen_stages=frozen_stages, norm=norm,
            pretrained=pretrained, out_indices=out_indices,
        )
