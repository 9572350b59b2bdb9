"""Optimizers from ``torch.optim``, with MMDetection's defaults as recipe keys.

``params`` is what ``torch.optim`` takes: an iterable of parameters or of
param-group dicts. When every parameter is on CUDA the step is fused (one
kernel for all of them: ``fused=True``); the state dict is the same either way.

    >>> optimizer = sgd(model.parameters(), lr=0.02)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from detsdk.errors import RecipeError


def sgd(
    params: Iterable[Any],
    lr: float = 0.02,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = False,
) -> torch.optim.SGD:
    """SGD with momentum (Faster R-CNN 1x: lr 0.02 for 16 images a step, momentum 0.9, decay 1e-4)."""
    _check_non_negative("sgd", lr=lr, momentum=momentum, weight_decay=weight_decay)
    if nesterov and momentum <= 0:
        raise RecipeError(f"optimizer 'sgd': nesterov = true needs momentum > 0, got momentum = {momentum!r}")
    params, fused = _fusable(params)
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=bool(nesterov), fused=fused
    )


def adamw(
    params: Iterable[Any],
    lr: float = 1e-4,
    betas: list[float] = [0.9, 0.999],  # noqa: B006 - never mutated; a list so `sdk list` shows TOML
    weight_decay: float = 0.05,
) -> torch.optim.AdamW:
    """AdamW (decoupled weight decay), as used for transformer backbones."""
    _check_non_negative("adamw", lr=lr, weight_decay=weight_decay)
    if (
        not isinstance(betas, (list, tuple))
        or len(betas) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in betas)
    ):
        raise RecipeError(f"optimizer 'adamw': betas must be two numbers in [0, 1), got {betas!r}")
    params, fused = _fusable(params)
    return torch.optim.AdamW(
        params, lr=lr, betas=(float(betas[0]), float(betas[1])), weight_decay=weight_decay, fused=fused
    )


def _fusable(params: Iterable[Any]) -> tuple[list[Any], bool | None]:
    """The parameters as a list, and ``True`` when all of them are floating-point CUDA tensors (else None)."""
    params = [_listed_group(item) if isinstance(item, dict) else item for item in params]
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    on_cuda = bool(tensors) and all(t.is_cuda and t.is_floating_point() for t in tensors)
    return params, True if on_cuda else None


def _listed_group(group: dict[str, Any]) -> dict[str, Any]:
    """A param-group dict whose ``params`` is a list (it may arrive as a tensor or a generator)."""
    params = group["params"]
    return {**group, "params": [params] if torch.is_tensor(params) else list(params)}


def _check_non_negative(name: str, **values: float) -> None:
    for parameter, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise RecipeError(f"optimizer '{name}': {parameter} must be a number >= 0, got {value!r}")
