"""Swin Transformer backbone: torchvision's ``swin_<t|s|b>`` / ``swin_v2_<t|s|b>`` features, NCHW, normed outputs.

Parameter names are torchvision's (``features.<i>...``), so a torchvision
classification state dict loads as it is (``norm.*`` and ``head.*`` are skipped).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.ops import StochasticDepth

from detsdk.builtin.models.pretrained import load_pretrained
from detsdk.builtin.models.staged import (
    STAGE_STRIDES,
    HierarchicalBackbone,
    check_stage_arguments,
    in_built_features,
    output_name,
)
from detsdk.errors import RecipeError, suggest

# arch -> (torchvision's size letter, channels of the four stages)
ARCHS = {
    "tiny": ("t", [96, 192, 384, 768]),
    "small": ("s", [96, 192, 384, 768]),
    "base": ("b", [128, 256, 512, 1024]),
}
VERSIONS = (1, 2)
COMPONENT = "backbone swin"


class SwinTransformer(HierarchicalBackbone):
    """Swin Transformer tiny/small/base feature extractor, v1 or v2 (MMDetection's ``SwinTransformer``).

    torchvision's ``features`` are a stride-4 patch embedding, then four stages of
    (shifted) window attention blocks, each after the first preceded by patch merging
    (stride 2). They work channels-last; the outputs are permuted to NCHW. Like MMDetection,
    each returned map goes through its own LayerNorm over channels (``out_norms``), which is
    not in torchvision's weights and starts as the identity; torchvision's final ``norm``
    (for classification) is dropped.

    Any input size works: windows are padded inside each block (v1 windows are 7x7, v2
    8x8) and odd sizes are padded before patch merging, so with the ``pad`` transform's
    ``size_divisor = 32`` each map is exactly ``H / stride`` by ``W / stride``.

    =======  ===========================  ===================
    arch     out_channels                 strides
    =======  ===========================  ===================
    tiny     ``[96, 192, 384, 768]``      ``[4, 8, 16, 32]``
    small    ``[96, 192, 384, 768]``      ``[4, 8, 16, 32]``
    base     ``[128, 256, 512, 1024]``    ``[4, 8, 16, 32]``
    =======  ===========================  ===================

    Args:
        arch: ``"tiny"``, ``"small"`` or ``"base"``.
        version: ``1`` (torchvision's ``swin_t`` ...) or ``2`` (``swin_v2_t`` ...).
        drop_path_rate: stochastic depth, rising linearly over the blocks to this rate
            (torchvision's ``stochastic_depth_prob``; 0.2 as MMDetection's Swin-T recipes).
        frozen_stages: ``-1`` trains everything, ``0`` freezes the patch embedding
            (``features.0``), ``k`` freezes it and stages ``1 .. k`` (with their patch merging
            and output norms): parameters get ``requires_grad=False`` and the modules stay in
            eval mode.
        pretrained: ``""`` for random init; a torchvision weights name of that model
            (``"DEFAULT"``, ``"IMAGENET1K_V1"``), fetched through torchvision's weights API; or
            the path of a local ``.pth`` state dict (plain, or under ``"state_dict"`` or
            ``"model"``), read with ``torch.load(weights_only=True)``.
        out_indices: which stages to return, 0-based (``0``: ``"c2"``, stride 4 .. ``3``:
            ``"c5"``, stride 32).

    ``forward(images[B,3,H,W])`` returns ``{"c2": ..., "c5": ...}`` fine to coarse, NCHW.

    >>> SwinTransformer(arch="tiny", version=2, pretrained="DEFAULT")  # doctest: +SKIP
    """

    def __init__(
        self,
        arch: str = "tiny",
        version: int = 1,
        drop_path_rate: float = 0.2,
        frozen_stages: int = -1,
        pretrained: str = "",
        out_indices: list[int] = [0, 1, 2, 3],  # noqa: B006 (never mutated; shown as the recipe default)
    ):
        super().__init__()
        if arch not in ARCHS:
            raise RecipeError(
                f"{COMPONENT}: unknown arch {arch!r}{suggest(str(arch), ARCHS)}; valid: {', '.join(ARCHS)}"
            )
        if version not in VERSIONS:
            raise RecipeError(f"{COMPONENT}: version must be 1 or 2, got {version!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise RecipeError(f"{COMPONENT}: drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        indices = check_stage_arguments(COMPONENT, frozen_stages, out_indices)
        letter, channels = ARCHS[arch]
        self.model_name = f"swin_{letter}" if version == 1 else f"swin_v2_{letter}"
        net = torchvision.models.get_model(self.model_name, weights=None)
        _set_drop_path_rate(net.features, drop_path_rate)
        self.arch = arch
        self.version = version
        self.frozen_stages = frozen_stages
        self.out_indices = indices
        # features: [patch embed, stage 1, merge, stage 2, merge, stage 3, merge, stage 4]; stage i (0-based)
        # is features[2i+1]. Stages past the last returned one are not built: no unused parameters under DDP.
        self.features = net.features[: 2 * indices[-1] + 2]
        self.out_channels = [channels[i] for i in indices]
        self.strides = [STAGE_STRIDES[i] for i in indices]
        self.out_norms = nn.ModuleDict({output_name(i): nn.LayerNorm(channels[i]) for i in indices})
        if pretrained:
            self.load_pretrained(pretrained)
        self.freeze_stages()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalized NCHW feature maps of the selected stages, fine to coarse, named ``c2`` .. ``c5``."""
        return {
            name: self.out_norms[name](x).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
            for name, x in self.stage_outputs(images)
        }

    def load_pretrained(self, pretrained: str) -> None:
        """Load a torchvision weights name or a local state-dict file (see the class docstring)."""
        built = len(self.features)
        load_pretrained(
            self, pretrained, component=COMPONENT, model_name=self.model_name,
            skip=lambda key: not in_built_features(key, built),
            added=lambda key: key.startswith("out_norms."),
        )


def _set_drop_path_rate(features: nn.Module, rate: float) -> None:
    # torchvision's swin_* builders fix stochastic_depth_prob, so set the per-block rates as
    # they would be: rising linearly from 0 at the first block to ``rate`` at the last.
    layers = [m for m in features.modules() if isinstance(m, StochasticDepth)]
    for i, layer in enumerate(layers):
        layer.p = rate * i / max(1, len(layers) - 1)
