"""Parameters and FLOPs of a model on one input, counted by ``torch.utils.flop_counter``.

FLOPs count a multiply-add as two; ``macs`` is half of that, the figure MMDetection's
``get_flops`` and fvcore report as "FLOPs". Only operators the counter knows are counted
(convolutions, matrix products, attention); RoIAlign, NMS and element-wise work are not.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@attrs.frozen
class Complexity:
    """``parameters`` (count), ``flops`` (a multiply-add = 2) and ``macs`` (multiply-adds) of one forward pass."""

    parameters: int
    flops: int
    macs: int


def model_complexity(model: nn.Module, image_shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Complexity:
    """Count ``model``'s parameters and the FLOPs of ``model(torch.zeros(image_shape))`` in eval mode.

    ``image_shape`` is the full input shape, e.g. ``(1, 3, 800, 1344)``; ``dtype`` the input's
    (``torch.uint8`` for an exported graph that normalises inside).

    >>> model_complexity(model, (1, 3, 800, 1344)).macs  # doctest: +SKIP
    """
    parameters = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(image_shape, dtype=dtype, device=device))
    finally:
        model.train(was_training)
    flops = int(counter.get_total_flops())
    return Complexity(parameters=parameters, flops=flops, macs=flops // 2)
