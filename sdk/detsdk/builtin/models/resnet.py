"""ResNet backbone: torchvision's ResNet blocks, returning the c2-c5 feature maps.

Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1`` .. ``layer4``),
so a torchvision classification state dict loads as it is (``fc.*`` is skipped).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import get_model_weights, get_weight
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet
from torchvision.ops import FrozenBatchNorm2d

from detsdk.errors import CheckpointError, RecipeError, suggest, warn

# depth -> (block, blocks per stage)
DEPTHS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
}
NORMS = ("bn", "frozen_bn", "gn")
STAGE_STRIDES = [4, 8, 16, 32]
GN_GROUPS = 32


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """The normalization layer factory for ``norm``: ``"bn"``, ``"frozen_bn"`` or ``"gn"`` (32 groups)."""
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(GN_GROUPS, channels)
    raise RecipeError(f"backbone resnet: unknown norm '{norm}'{suggest(norm, NORMS)}; valid: {', '.join(NORMS)}")


class ResNet(nn.Module):
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
        super().__init__()
        if depth not in DEPTHS:
            raise RecipeError(
                f"backbone resnet: unsupported depth {depth!r}; valid: {', '.join(map(str, DEPTHS))}"
            )
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= 4:
            raise RecipeError(f"backbone resnet: frozen_stages must be an integer from -1 to 4, got {frozen_stages!r}")
        indices = list(out_indices)
        if not indices or sorted(set(indices)) != indices or not all(i in range(4) for i in indices):
            raise RecipeError(
                f"backbone resnet: out_indices must be increasing stage numbers from 0 to 3, got {out_indices!r}"
            )
        block, layers = DEPTHS[depth]
        net = TorchvisionResNet(block, layers, norm_layer=norm_layer(norm))
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
        self._freeze_stages()

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """Modules of stage ``stage``: 0 is the stem (``conv1``, ``bn1``), ``k`` is ``layer<k>``."""
        if stage == 0:
            return [self.conv1, self.bn1]
        return [getattr(self, f"layer{stage}")] if stage <= self.num_stages else []

    def _freeze_stages(self) -> None:
        for stage in range(self.frozen_stages + 1):
            for module in self.stage_modules(stage):
                module.eval()
                for param in module.parameters():
                    param.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        """Set training mode, keeping frozen stages (and their norm statistics) in eval mode."""
        super().train(mode)
        if mode:
            for stage in range(self.frozen_stages + 1):
                for module in self.stage_modules(stage):
                    module.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps of the selected stages, fine to coarse, named ``c2`` .. ``c5``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        outputs = {}
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.out_indices:
                outputs[f"c{i + 2}"] = x
        return outputs

    # -- pretrained weights -------------------------------------------------
    def load_pretrained(self, pretrained: str) -> None:
        """Load a torchvision weights name or a local state-dict file (see the class docstring)."""
        if _looks_like_path(pretrained):
            state_dict = _read_state_dict_file(pretrained)
            source = f"'{pretrained}'"
        else:
            weights = _resolve_weights(self.depth, pretrained)
            try:
                state_dict = weights.get_state_dict(progress=False, weights_only=True)
            except Exception as exc:  # no network, a partial download, a bad cache file...
                file_name = os.path.basename(weights.url)
                cache = os.path.join(torch.hub.get_dir(), "checkpoints", file_name)
                raise CheckpointError(
                    f"backbone resnet: cannot get pretrained weights {weights} from {weights.url} ({exc}); "
                    f"download that file to {cache}, or set pretrained to a local .pth file"
                ) from exc
            source = str(weights)
        self._load_state_dict_reporting(state_dict, source)

    def _load_state_dict_reporting(self, state_dict: dict, source: str) -> None:
        own = self.state_dict()
        skipped = [k for k in state_dict if k.startswith("fc.") or _in_unbuilt_stage(k, self.num_stages)]
        usable = {k: v for k, v in state_dict.items() if k not in skipped}
        if not any(k in own for k in usable):
            sample = ", ".join(list(state_dict)[:3])
            raise CheckpointError(
                f"backbone resnet: {source} holds no ResNet weights (keys look like: {sample}); "
                "expected torchvision names such as conv1.weight, layer1.0.conv1.weight"
            )
        try:
            result = self.load_state_dict(usable, strict=False)
        except RuntimeError as exc:  # shape mismatch, e.g. resnet18 weights into depth=50
            first = str(exc).strip().splitlines()
            raise CheckpointError(
                f"backbone resnet(depth={self.depth}): {source} does not fit: {' '.join(first[1:3]) or first[0]}"
            ) from exc
        # FrozenBatchNorm2d has no num_batches_tracked; that is not a real mismatch.
        unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
        if result.missing_keys:
            warn(f"backbone resnet: {source} lacks {len(result.missing_keys)} weights, left random: {_short(result.missing_keys)}")
        if unexpected:
            warn(f"backbone resnet: {source} has {len(unexpected)} weights the model ignores: {_short(unexpected)}")


def _looks_like_path(pretrained: str) -> bool:
    return pretrained.endswith((".pth", ".pt", ".bin", ".ckpt")) or os.sep in pretrained or os.path.exists(pretrained)


def _resolve_weights(depth: int, name: str):
    """A torchvision ``Weights`` entry for ``resnet<depth>`` from ``"DEFAULT"``, ``"IMAGENET1K_V1"``, ..."""
    enum = get_model_weights(f"resnet{depth}")
    if "." in name:
        try:
            weights = get_weight(name)
        except (ValueError, KeyError) as exc:
            raise RecipeError(f"backbone resnet: unknown pretrained weights '{name}' ({exc})") from exc
        if type(weights) is not enum:
            raise RecipeError(f"backbone resnet: pretrained '{name}' is not for resnet{depth}; use {enum.__name__}.*")
        return weights
    names = list(enum.__members__)
    if name not in names:
        raise RecipeError(
            f"backbone resnet: unknown pretrained '{name}' for resnet{depth}{suggest(name, names)}; valid: "
            f"{', '.join(names)}, or the path of a local .pth file"
        )
    return enum[name]


def _read_state_dict_file(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"backbone resnet: pretrained file '{path}' does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with code, truncated files...
        raise CheckpointError(f"backbone resnet: cannot read pretrained file '{path}': {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict):
        raise CheckpointError(f"backbone resnet: '{path}' holds a {type(data).__name__}, not a state dict")
    # Checkpoints saved from DistributedDataParallel prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in data.items()}


def _in_unbuilt_stage(key: str, num_stages: int) -> bool:
    return any(key.startswith(f"layer{i}.") for i in range(num_stages + 1, 5))


def _short(keys: list[str], limit: int = 5) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
