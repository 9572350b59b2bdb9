"""An exponential moving average of a model's weights (``train.ema``), on ``torch.optim.swa_utils.AveragedModel``.

The average follows MMDetection's ``ExpMomentumEMA``: after the ``n``-th
optimizer step (``n >= 1``) every averaged tensor moves towards the model's by

    momentum_n = (1 - momentum) * exp(-(1 + n) / gamma) + momentum

so early, noisy weights fade quickly, and later ones with ``momentum``
(``gamma = 0`` keeps ``momentum`` constant: MMEngine's ``ExponentialMovingAverage``,
``get_ema_multi_avg_fn(decay=1 - momentum)``). The first update copies the model.

    >>> ema = ModelEMA(model)                  # doctest: +SKIP
    >>> ema.update(model)                      # after each optimizer step
    >>> ema.module                             # the averaged detector, for evaluation
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class ModelEMA:
    """The averaged copy of ``model`` and its update rule.

    Args:
        model: the model being trained (its weights are copied; the copy is the average).
        momentum: the weight of the model's values in each update, once warmed up.
        gamma: the warm-up length in updates (0: no warm-up).
        update_buffers: average buffers (BatchNorm statistics) too; otherwise copy them.
    """

    def __init__(self, model: nn.Module, momentum: float = 0.0002, gamma: float = 2000, update_buffers: bool = True):
        self.momentum, self.gamma, self.update_buffers = float(momentum), float(gamma), bool(update_buffers)
        self.updates = 0  # optimizer steps averaged so far (a Python int: no device sync to read it)
        self._weight = 1.0
        self.averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=self.update_buffers)
        self.averaged.eval()

    @property
    def module(self) -> nn.Module:
        """The averaged model (in eval mode): what evaluation and ``best.pt`` use."""
        return self.averaged.module

    def momentum_at(self, updates: int) -> float:
        """The weight of the model in the ``updates``-th update (1-based; the first one copies)."""
        if self.gamma <= 0:
            return self.momentum
        return (1 - self.momentum) * math.exp(-(1 + updates) / self.gamma) + self.momentum

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (call after each optimizer step)."""
        self._weight = self.momentum_at(self.updates)
        self.averaged.update_parameters(model)
        if not self.update_buffers:
            for mine, theirs in zip(self.module.buffers(), model.buffers()):
                mine.copy_(theirs)
        self.updates += 1

    def _average(self, averaged: list[torch.Tensor], current: list[torch.Tensor], _count: torch.Tensor) -> None:
        # AveragedModel groups tensors by device and dtype: one fused lerp per group.
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, self._weight)
        else:  # integer buffers (BatchNorm's step counter) follow the model
            for mine, theirs in zip(averaged, current):
                mine.copy_(theirs)

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count."""
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s output."""
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
        self.averaged.n_averaged.fill_(self.updates)
