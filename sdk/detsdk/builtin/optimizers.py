"""Optimizers from ``torch.optim``, with MMDetection's defaults as recipe keys.

``params`` is what ``torch.optim`` takes: an iterable of parameters or of
param-group dicts.

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
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=bool(nesterov))


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
    return torch.optim.AdamW(params, lr=lr, betas=(float(betas[0]), float(betas[1])), weight_decay=weight_decay)


def _check_non_negative(name: str, **values: float) -> None:
    for parameter, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise RecipeError(f"optimizer '{name}': {parameter} must be a number >= 0, got {value!r}")
