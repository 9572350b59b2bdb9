"""CSPNeXt: RTMDet's backbone (MMDetection's ``CSPNeXt``, arch P5), with MMDetection's parameter names."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from detsdk.builtin.models.csp_layers import ConvModule, CSPLayer, SPPBottleneck, conv_module
from detsdk.builtin.models.pretrained import _load_reporting, looks_like_path, read_state_dict_file
from detsdk.errors import RecipeError

# Per stage: in_channels, out_channels, num_blocks, add_identity, use_spp (before widen/deepen factors).
ARCH_SETTINGS = {
    "P5": [
        [64, 128, 3, True, False], [128, 256, 6, True, False], [256, 512, 6, True, False], [512, 1024, 3, False, True],
    ],
    "P6": [
        [64, 128, 3, True, False], [128, 256, 6, True, False], [256, 512, 6, True, False],
        [512, 768, 3, True, False], [768, 1024, 3, False, True],
    ],
}


class CSPNeXt(nn.Module):
    """CSPNeXt (Lyu et al. 2022, RTMDet): a 3-conv stem and stages of conv + CSP layer (+ SPP last).

    Args:
        arch: ``"P5"`` (strides 8-32 from ``out_indices = [2, 3, 4]``) or ``"P6"``.
        deepen_factor: blocks per CSP layer are ``max(round(n * deepen_factor), 1)``.
        widen_factor: channels are ``int(c * widen_factor)``. RTMDet-tiny 0.167/0.375,
            s 0.33/0.5, m 0.67/0.75, l 1/1, x 1.33/1.25.
        expand_ratio: the CSP layers' hidden channel ratio.
        out_indices: which outputs to return: 0 the stem, ``k`` stage ``k``.
        frozen_stages: freeze the stem and the first ``frozen_stages`` stages (``-1``: none).
        depthwise: depthwise-separable convolutions (MMDetection's ``use_depthwise``).
        channel_attention: a channel attention in every stage's CSP layer.
        norm_eval: keep BatchNorm statistics frozen in training.
        pretrained: ``""`` or the path of an MMDetection/MMPretrain CSPNeXt ImageNet file
            (``cspnext-tiny_imagenet_600e.pth``; keys under ``state_dict``, prefix
            ``backbone.``), read with ``torch.load(weights_only=True)``. Those files were
            trained on RGB input.

    ``forward(images)`` returns ``{"c3": ..., "c4": ..., "c5": ...}`` (named for the stride
    ``2**k``), fine to coarse; ``out_channels`` and ``strides`` describe them.
    """

    def __init__(
        self,
        arch: Literal["P5", "P6"] = "P5",
        deepen_factor: float = 1.0,
        widen_factor: float = 1.0,
        expand_ratio: float = 0.5,
        out_indices: list[int] = [2, 3, 4],  # noqa: B006 (never mutated)
        frozen_stages: int = -1,
        depthwise: bool = False,
        channel_attention: bool = True,
        spp_kernel_sizes: list[int] = [5, 9, 13],  # noqa: B006
        norm_eval: bool = False,
        pretrained: str = "",
    ):
        super().__init__()
        if arch not in ARCH_SETTINGS:
            raise RecipeError(f"backbone cspnext: arch = {arch!r}: expected one of {', '.join(ARCH_SETTINGS)}")
        settings = ARCH_SETTINGS[arch]
        if not out_indices or any(not isinstance(i, int) or not 0 <= i <= len(settings) for i in out_indices):
            raise RecipeError(
                f"backbone cspnext: out_indices = {out_indices!r}: expected indexes in 0..{len(settings)} "
                "(0 the stem, k stage k)"
            )
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= len(settings):
            raise RecipeError(f"backbone cspnext: frozen_stages = {frozen_stages!r}: expected -1..{len(settings)}")
        stem_channels = int(settings[0][0] * widen_factor)
        self.stem = nn.Sequential(
            ConvModule(3, stem_channels // 2, 3, stride=2),
            ConvModule(stem_channels // 2, stem_channels // 2, 3),
            ConvModule(stem_channels // 2, stem_channels, 3),
        )
        self.layers = ["stem"]
        channels, strides = [stem_channels], [2]
        for i, (in_ch, out_ch, blocks, add_identity, use_spp) in enumerate(settings):
            in_ch, out_ch = int(in_ch * widen_factor), int(out_ch * widen_factor)
            stage: list[nn.Module] = [conv_module(in_ch, out_ch, 3, stride=2, depthwise=depthwise)]
            if use_spp:
                stage.append(SPPBottleneck(out_ch, out_ch, tuple(spp_kernel_sizes)))
            stage.append(
                CSPLayer(
                    out_ch, out_ch, expand_ratio, max(round(blocks * deepen_factor), 1), add_identity,
                    depthwise, channel_attention,
                )
            )
            self.add_module(f"stage{i + 1}", nn.Sequential(*stage))
            self.layers.append(f"stage{i + 1}")
            channels.append(out_ch)
            strides.append(strides[-1] * 2)
        self.out_indices = sorted(out_indices)
        self.out_channels = [channels[i] for i in self.out_indices]
        self.strides = [strides[i] for i in self.out_indices]
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if pretrained:
            self.load_pretrained(pretrained)
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        for name in self.layers[: self.frozen_stages + 1]:
            module = getattr(self, name)
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> CSPNeXt:
        """Train mode, keeping frozen stages (and, with ``norm_eval``, every BatchNorm) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The selected outputs, fine to coarse, named ``c<k>`` for stride ``2**k``."""
        outputs = {}
        x = images
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outputs[f"c{i + 1}"] = x
        return outputs

    def load_pretrained(self, pretrained: str) -> None:
        """Load an ImageNet CSPNeXt file (MMDetection's names, ``backbone.`` prefix optional)."""
        component = "backbone cspnext"
        if not looks_like_path(pretrained):
            raise RecipeError(
                f"{component}: pretrained = {pretrained!r}: expected the path of a CSPNeXt .pth file "
                "(torchvision has no CSPNeXt weights)"
            )
        state_dict = read_state_dict_file(pretrained, component)
        state_dict = {k.removeprefix("backbone."): v for k, v in state_dict.items()}
        _load_reporting(
            self, state_dict, f"'{pretrained}'", component=component, model_name="CSPNeXt",
            skip=lambda key: not key.startswith(tuple(self.layers)), added=lambda key: False,
        )
