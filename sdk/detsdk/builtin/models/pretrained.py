"""Pretrained backbone weights: a torchvision weights name or a local state-dict file, loaded with a report.

Every built-in backbone keeps torchvision's parameter names, so a torchvision
classification state dict loads into it as it is; what the backbone does not use
(the classifier, stages it does not build) is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import get_model_weights, get_weight

from detsdk.errors import CheckpointError, RecipeError, suggest, warn

FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def load_pretrained(
    backbone: nn.Module,
    pretrained: str,
    *,
    component: str,
    model_name: str,
    skip: Callable[[str], bool],
    added: Callable[[str], bool] = lambda key: False,
) -> None:
    """Load ``pretrained`` into ``backbone``, warning about weights left random or ignored.

    Args:
        backbone: a module whose parameter names are those of torchvision's ``model_name``.
        pretrained: a torchvision weights name for ``model_name`` (``"DEFAULT"``,
            ``"IMAGENET1K_V1"``, ``"ResNet50_Weights.IMAGENET1K_V2"``), fetched through
            torchvision's weights API (cached under ``$TORCH_HOME/hub/checkpoints``); or the path
            of a local ``.pth``/``.pt`` state dict (plain, or under ``"state_dict"`` or ``"model"``),
            read with ``torch.load(weights_only=True)``.
        component: how messages name the backbone, e.g. ``"backbone resnet"``.
        model_name: torchvision's model name, e.g. ``"resnet50"``, ``"swin_v2_t"``.
        skip: keys of the file that the backbone does not use (classifier, unbuilt stages).
        added: keys of the backbone that torchvision weights lack by design (extra output
            norms); they stay at their initialization without a warning.

    >>> load_pretrained(net, "DEFAULT", component="backbone resnet", model_name="resnet50",
    ...                 skip=lambda key: key.startswith("fc."))  # doctest: +SKIP
    """
    if looks_like_path(pretrained):
        state_dict = read_state_dict_file(pretrained, component)
        source = f"'{pretrained}'"
    else:
        weights = resolve_weights(model_name, pretrained, component)
        try:
            state_dict = weights.get_state_dict(progress=False, weights_only=True)
        except Exception as exc:  # no network, a partial download, a bad cache file...
            cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
            raise CheckpointError(
                f"{component}: cannot get pretrained weights {weights} from {weights.url} ({exc}); "
                f"download that file to {cache}, or set pretrained to a local .pth file"
            ) from exc
        source = str(weights)
    _load_reporting(backbone, state_dict, source, component=component, model_name=model_name, skip=skip, added=added)


def looks_like_path(pretrained: str) -> bool:
    """Whether ``pretrained`` names a file rather than a torchvision weights entry."""
    return pretrained.endswith(FILE_SUFFIXES) or os.sep in pretrained or os.path.exists(pretrained)


def resolve_weights(model_name: str, name: str, component: str):
    """A torchvision ``Weights`` entry for ``model_name`` from ``"DEFAULT"``, ``"IMAGENET1K_V1"``, ..."""
    enum = get_model_weights(model_name)
    if "." in name:
        try:
            weights = get_weight(name)
        except (ValueError, KeyError) as exc:
            raise RecipeError(f"{component}: unknown pretrained weights '{name}' ({exc})") from exc
        if type(weights) is not enum:
            raise RecipeError(f"{component}: pretrained '{name}' is not for {model_name}; use {enum.__name__}.*")
        return weights
    names = list(enum.__members__)
    if name not in names:
        raise RecipeError(
            f"{component}: unknown pretrained '{name}' for {model_name}{suggest(name, names)}; valid: "
            f"{', '.join(names)}, or the path of a local .pth file"
        )
    return enum[name]


def read_state_dict_file(path: str, component: str) -> dict[str, torch.Tensor]:
    """The state dict in a local file: plain or under ``"state_dict"``/``"model"``, ``module.`` prefixes removed."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{component}: pretrained file '{path}' does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with code, truncated files...
        raise CheckpointError(f"{component}: cannot read pretrained file '{path}': {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict):
        raise CheckpointError(f"{component}: '{path}' holds a {type(data).__name__}, not a state dict")
    # Checkpoints saved from DistributedDataParallel prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in data.items()}


def _load_reporting(
    backbone: nn.Module,
    state_dict: dict,
    source: str,
    *,
    component: str,
    model_name: str,
    skip: Callable[[str], bool],
    added: Callable[[str], bool],
) -> None:
    own = backbone.state_dict()
    usable = {k: v for k, v in state_dict.items() if not skip(k)}
    if not any(k in own for k in usable):
        sample = ", ".join(list(state_dict)[:3])
        expected = ", ".join(list(own)[:2])
        raise CheckpointError(
            f"{component}: {source} holds no {model_name} weights (keys look like: {sample}); "
            f"expected torchvision names such as {expected}"
        )
    try:
        result = backbone.load_state_dict(usable, strict=False)
    except RuntimeError as exc:  # shape mismatch, e.g. resnet18 weights into resnet50
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{component} ({model_name}): {source} does not fit: {' '.join(first[1:3]) or first[0]}"
        ) from exc
    missing = [k for k in result.missing_keys if not added(k)]
    # FrozenBatchNorm2d has no num_batches_tracked; that is not a real mismatch.
    unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    if missing:
        warn(f"{component}: {source} lacks {len(missing)} weights, left random: {_short(missing)}")
    if unexpected:
        warn(f"{component}: {source} has {len(unexpected)} weights the model ignores: {_short(unexpected)}")


def _short(keys: list[str], limit: int = 5) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
