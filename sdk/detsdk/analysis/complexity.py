"""Parameters, FLOPs and multiply-adds of a model on one image, counted by ``torch.utils.flop_counter``.

PyTorch's counter reports FLOPs (a multiply-add is 2); MMDetection's
``get_flops`` and fvcore report multiply-adds and call them "FLOPs", so both
are given: ``macs = flops / 2``. Only what the counter knows is counted
(convolutions, matrix products, attention); NMS, RoI pooling and other
post-processing add nothing.

    >>> c = model_complexity(model, (800, 1333))     # doctest: +SKIP
    >>> c.parameters, c.flops / 1e9, c.macs / 1e9    # doctest: +SKIP
"""

from __future__ import annotations

import inspect

import attrs
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@attrs.frozen
class Complexity:
    """Counts for one forward pass in eval mode (on a 1×3×H×W image unless a batch shape was given)."""

    parameters: int
    flops: int
    macs: int
    trainable: int = 0
    modules: dict[str, int] = attrs.field(factory=dict)  # parameters per top-level child module
    image_shape: tuple[int, int] = (0, 0)


def parameter_counts(model: nn.Module) -> tuple[int, int, dict[str, int]]:
    """``(total, trainable, per top-level child)`` parameter counts; shared parameters count once."""
    unique = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in unique)
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    modules = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    return total, trainable, modules


@torch.no_grad()
def model_complexity(model: nn.Module, image_shape: tuple[int, ...] = (800, 1333),
                     dtype: torch.dtype = torch.float32) -> Complexity:
    """Count ``model``'s parameters and the FLOPs of one eval forward on an ``image_shape`` image.

    ``image_shape`` is ``(H, W)`` (one 3-channel image) or a whole ``(N, C, H, W)``
    batch; ``dtype`` ``torch.uint8`` gives seeded 0-255 pixels (an exported graph's input).

    The image is seeded noise on the model's device (an all-zero image can
    change how many proposals a two-stage detector keeps). A detector whose
    ``forward`` takes ``image_sizes`` is given the image's size.
    """
    shape = tuple(int(v) for v in image_shape)
    shape = (1, 3, *shape) if len(shape) == 2 else shape
    height, width = shape[-2:]
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    if dtype == torch.uint8:
        images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    else:
        images = torch.rand(shape, generator=generator, dtype=dtype)
    images = images.to(device)
    total, trainable, modules = parameter_counts(model)
    was_training = model.training
    model.eval()
    try:
        keywords = {"image_sizes": [(height, width)]} if "image_sizes" in inspect.signature(model.forward).parameters else {}
        with FlopCounterMode(display=False) as counter:
            model(images, **keywords)
    finally:
        model.train(was_training)
    flops = int(counter.get_total_flops())
    return Complexity(parameters=total, flops=flops, macs=flops // 2, trainable=trainable, modules=modules,
                      image_shape=(height, width))
