"""``runtime.load_from``: start from a det-sdk, torchvision or MMDetection checkpoint, converting its names.

It sits above both ``checkpoint`` (reading files, loading what fits) and
``interop`` (converting names), so neither imports the other's caller.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from detsdk.engine.checkpoint import listing, load_checkpoint, load_matching_weights, model_state_of
from detsdk.engine.interop import DETSDK, to_detsdk
from detsdk.errors import warn


def load_weights_from(model: nn.Module, source: str | Path) -> list[str]:
    """``runtime.load_from``: read a checkpoint, convert its names, load what fits; returns the re-initialised.

    ``source`` is a det-sdk checkpoint, a torchvision detection state dict or an MMDetection
    2.x checkpoint (told apart by their keys, see ``detsdk.engine.interop``).
    """
    conversion = to_detsdk(model_state_of(load_checkpoint(source)))
    if conversion.source_format != DETSDK:
        print(f"load_from {source}: {conversion.source_format} weights, renamed to det-sdk's parameter names")
    if conversion.unplaced:
        warn(
            f"load_from {source}: {len(conversion.unplaced)} {conversion.source_format} weights have no det-sdk "
            f"counterpart and were skipped: {listing(conversion.unplaced)}"
        )
    return load_matching_weights(model, conversion.weights, str(source))
