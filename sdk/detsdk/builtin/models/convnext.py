"""ConvNeXt backbone: torchvision's ``convnext_<arch>`` features, with a LayerNorm on each output as MMDetection.

Parameter names are torchvision's (``features.<i>...``), so a torchvision
classification state dict loads as it is (``classifier.*`` is skipped).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.convnext import LayerNorm2d

from detsdk.builtin.models.pretrained import load_pretrained
from detsdk.builtin.models.staged import (
    STAGE_STRIDES,
    HierarchicalBackbone,
    check_stage_arguments,
    in_built_features,
    output_name,
)
from detsdk.errors import RecipeError, suggest

# arch -> channels of the four stages (torchvision's convnext_<arch>)
ARCHS = {
    "tiny": [96, 192, 384, 768],
    "small": [96, 192, 384, 768],
    "base": [128, 256, 512, 1024],
    "large": [192, 384, 768, 1536],
}
COMPONENT = "backbone convnext"


class ConvNeXt(HierarchicalBackbone):
    """ConvNeXt tiny/small/base/large feature extractor (MMDetection's ``mmpretrain.ConvNeXt``).

    torchvision's ``features`` are a stride-4 patchify stem, then four stages of ConvNeXt
    blocks, each after the first preceded by a stride-2 downsampling layer. Like MMDetection,
    each returned map goes through its own LayerNorm over channels (``out_norms``,
    ``LayerNorm2d`` with ``eps=1e-6``): the blocks end in a residual sum with no norm, and
    the heads train better on normalized maps. These norms are not in torchvision's
    weights; they start as the identity (weight 1, bias 0).

    =======  ===========================  ===================
    arch     out_channels                 strides
    =======  ===========================  ===================
    tiny     ``[96, 192, 384, 768]``      ``[4, 8, 16, 32]``
    small    ``[96, 192, 384, 768]``      ``[4, 8, 16, 32]``
    base     ``[128, 256, 512, 1024]``    ``[4, 8, 16, 32]``
    large    ``[192, 384, 768, 1536]``    ``[4, 8, 16, 32]``
    =======  ===========================  ===================

    Args:
        arch: ``"tiny"``, ``"small"``, ``"base"`` or ``"large"``.
        drop_path_rate: stochastic depth, rising linearly over the blocks to this rate
            (torchvision's ``stochastic_depth_prob``; MMDetection's ConvNeXt-T recipes use 0.4).
        frozen_stages: ``-1`` trains everything, ``0`` freezes the stem (``features.0``), ``k``
            freezes the stem and stages ``1 .. k`` (with their downsampling layers and output
            norms): parameters get ``requires_grad=False`` and the modules stay in eval mode.
        pretrained: ``""`` for random init; a torchvision weights name of ``convnext_<arch>``
            (``"DEFAULT"``, ``"IMAGENET1K_V1"``), fetched through torchvision's weights API; or
            the path of a local ``.pth`` state dict (plain, or under ``"state_dict"`` or
            ``"model"``), read with ``torch.load(weights_only=True)``.
        out_indices: which stages to return, 0-based (``0``: ``"c2"``, stride 4 .. ``3``:
            ``"c5"``, stride 32).

    ``forward(images[B,3,H,W])`` returns ``{"c2": ..., "c5": ...}`` fine to coarse, NCHW.

    >>> ConvNeXt(arch="tiny", pretrained="DEFAULT", drop_path_rate=0.4)  # doctest: +SKIP
    """

    def __init__(
        self,
        arch: str = "tiny",
        drop_path_rate: float = 0.0,
        frozen_stages: int = -1,
        pretrained: str = "",
        out_indices: list[int] = [0, 1, 2, 3],  # noqa: B006 (never mutated; shown as the recipe default)
    ):
        super().__init__()
        if arch not in ARCHS:
            raise RecipeError(
                f"{COMPONENT}: unknown arch {arch!r}{suggest(str(arch), ARCHS)}; valid: {', '.join(ARCHS)}"
            )
        if not 0.0 <= drop_path_rate < 1.0:
            raise RecipeError(f"{COMPONENT}: drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        indices = check_stage_arguments(COMPONENT, frozen_stages, out_indices)
        self.model_name = f"convnext_{arch}"
        net = torchvision.models.get_model(self.model_name, weights=None, stochastic_depth_prob=drop_path_rate)
        self.arch = arch
        self.frozen_stages = frozen_stages
        self.out_indices = indices
        # features: [stem, stage 1, down, stage 2, down, stage 3, down, stage 4]; stage i (0-based) is features[2i+1].
        # Stages past the last returned one are not built: no unused parameters under DDP.
        self.features = net.features[: 2 * indices[-1] + 2]
        self.out_channels = [ARCHS[arch][i] for i in indices]
        self.strides = [STAGE_STRIDES[i] for i in indices]
        self.out_norms = nn.ModuleDict({output_name(i): LayerNorm2d(ARCHS[arch][i], eps=1e-6) for i in indices})
        if pretrained:
            self.load_pretrained(pretrained)
        self.freeze_stages()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalized feature maps of the selected stages, fine to coarse, named ``c2`` .. ``c5``."""
        return {name: self.out_norms[name](x) for name, x in self.stage_outputs(images)}

    def load_pretrained(self, pretrained: str) -> None:
        """Load a torchvision weights name or a local state-dict file (see the class docstring)."""
        built = len(self.features)
        load_pretrained(
            self, pretrained, component=COMPONENT, model_name=self.model_name,
            skip=lambda key: not in_built_features(key, built),
            added=lambda key: key.startswith("out_norms."),
        )

