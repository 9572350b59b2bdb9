"""Backbones made of a stem and four stages: shared argument checks and MMDetection's ``frozen_stages``."""

from __future__ import annotations

import torch
from torch import nn

from detsdk.errors import RecipeError

NUM_STAGES = 4
STAGE_STRIDES = [4, 8, 16, 32]


def check_stage_arguments(component: str, frozen_stages: int, out_indices: list[int]) -> list[int]:
    """Validate ``frozen_stages`` (-1 to 4) and ``out_indices`` (increasing, 0 to 3); return the indices as a list."""
    if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= NUM_STAGES:
        raise RecipeError(
            f"{component}: frozen_stages must be an integer from -1 to {NUM_STAGES}, got {frozen_stages!r}"
        )
    indices = list(out_indices)
    if not indices or sorted(set(indices)) != indices or not all(i in range(NUM_STAGES) for i in indices):
        raise RecipeError(
            f"{component}: out_indices must be increasing stage numbers from 0 to {NUM_STAGES - 1}, got {out_indices!r}"
        )
    return indices


def output_name(stage_index: int) -> str:
    """The feature-map name of 0-based stage ``stage_index``: ``"c2"`` (stride 4) .. ``"c5"`` (stride 32)."""
    return f"c{stage_index + 2}"


class StagedBackbone(nn.Module):
    """Base for backbones with a stem (stage 0) and stages 1-4, freezing the first ones as MMDetection does.

    Subclasses set ``frozen_stages`` and implement ``stage_modules(stage)``; calling
    ``freeze_stages()`` at the end of ``__init__`` sets ``requires_grad=False`` on the stem and
    stages ``1 .. frozen_stages`` (nothing for ``-1``), and ``train()`` keeps them in eval mode,
    so their norm statistics (and stochastic depth) stay fixed while the rest trains.
    """

    frozen_stages: int = -1

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """Modules of stage ``stage``: 0 is the stem, ``k`` the k-th stage (``[]`` if it is not built)."""
        raise NotImplementedError

    def frozen_modules(self) -> list[nn.Module]:
        """Modules of the stem and the first ``frozen_stages`` stages."""
        return [module for stage in range(self.frozen_stages + 1) for module in self.stage_modules(stage)]

    def freeze_stages(self) -> None:
        """Stop gradients to the frozen stages and put them in eval mode."""
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True):
        """Set training mode, keeping frozen stages (and their norm statistics) in eval mode."""
        super().train(mode)
        if mode:
            for module in self.frozen_modules():
                module.eval()
        return self


class HierarchicalBackbone(StagedBackbone):
    """Base for torchvision models whose ``features`` alternate stages and downsampling (ConvNeXt, Swin).

    ``features`` is ``[stem, stage 1, down, stage 2, down, stage 3, down, stage 4]``, cut after
    the last returned stage, and each returned stage has a norm in ``out_norms`` under its
    output name. Stage ``k`` is its downsampling layer (for ``k >= 2``), its blocks and its
    output norm.
    """

    features: nn.Sequential
    out_norms: nn.ModuleDict

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """Modules of stage ``stage``: 0 is the stem, ``k`` its downsampling layer, blocks and output norm."""
        if stage == 0:
            return [self.features[0]]
        modules = list(self.features[max(1, 2 * stage - 2) : 2 * stage])
        if output_name(stage - 1) in self.out_norms:
            modules.append(self.out_norms[output_name(stage - 1)])
        return modules

    def stage_outputs(self, images: torch.Tensor):
        """``(name, x)`` after each returned stage's blocks, before its output norm."""
        x = images
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i % 2 == 1 and output_name(i // 2) in self.out_norms:
                yield output_name(i // 2), x


def in_built_features(key: str, built: int) -> bool:
    """Whether state-dict ``key`` belongs to ``features[:built]`` (not a classifier, not an unbuilt stage)."""
    parts = key.split(".")
    return len(parts) > 2 and parts[0] == "features" and parts[1].isdigit() and int(parts[1]) < built
