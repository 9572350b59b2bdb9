"""Normalisation on the device: the loader ships uint8 images and the engine normalises them where the model runs.

When a training pipeline ends with ``normalize`` (optionally followed by ``pad``
with ``pad_value = 0``), the recipe stays as it is but ``normalize`` is swapped
for ``DeferredNormalize``: the sample keeps its uint8 pixels and records the
statistics, ``collate`` stacks a uint8 batch (a quarter of the float32 bytes to
copy between processes and to the GPU), and ``DeviceNormalize`` computes
``(x - mean) / std`` on the device, with zeros in the padding exactly as the
CPU pipeline would have produced. Evaluation, prediction and TTA keep the CPU
pipeline.

    >>> transforms, normalize = defer_normalize(transforms)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from detsdk.data.transform_roles import NORMALIZE, PAD, role_of
from detsdk.errors import RecipeError


class DeferredNormalize:
    """``normalize`` that leaves the uint8 image alone and records its statistics, for ``DeviceNormalize``."""

    def __init__(self, mean: list[float], std: list[float]):
        self.mean, self.std = list(mean), list(std)

    def __call__(self, sample: dict) -> dict:
        """Record ``meta["normalize"]`` (with ``on_device``) and the unpadded size; the pixels stay uint8."""
        image = sample["image"]
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise RecipeError(f"normalize: expected an H×W×3 uint8 image, got {image.dtype} of shape {image.shape}")
        meta = dict(sample.get("meta") or {})
        if "normalize" in meta:
            raise RecipeError("normalize: the image is already normalized; the pipeline has 'normalize' twice")
        meta["normalize"] = {"mean": self.mean, "std": self.std, "on_device": True}
        meta.setdefault("img_shape", tuple(image.shape[:2]))  # what DeviceNormalize keeps unmasked
        return {**sample, "meta": meta}

    def __repr__(self) -> str:
        return f"DeferredNormalize(mean={self.mean}, std={self.std})"


class DeviceNormalize:
    """``(images - mean) / std`` on the images' device; zero outside each image's ``image_size``.

    Args:
        mean, std: per-channel statistics, RGB, in uint8 pixel units.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.inverse_std = 1.0 / torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor, targets: list[dict]) -> torch.Tensor:
        """Normalise a uint8 ``B×3×H×W`` batch; float batches (already normalised) pass through."""
        if images.dtype != torch.uint8:
            return images
        if self.mean.device != images.device:
            self.mean, self.inverse_std = self.mean.to(images.device), self.inverse_std.to(images.device)
        height, width = images.shape[-2:]
        sizes = torch.tensor([t["image_size"] for t in targets], dtype=torch.int64).to(images.device, non_blocking=True)
        rows = torch.arange(height, device=images.device).view(1, height, 1) < sizes[:, 0].view(-1, 1, 1)
        columns = torch.arange(width, device=images.device).view(1, 1, width) < sizes[:, 1].view(-1, 1, 1)
        inside = (rows & columns).unsqueeze(1)  # padding is 0 after normalize, as Pad and collate make it
        return torch.where(inside, (images.float() - self.mean) * self.inverse_std, 0.0)


def defer_normalize(transforms: Sequence) -> tuple[list, DeviceNormalize | None]:
    """Swap a trailing ``normalize`` (``[+ pad]`` with pad value 0) for ``DeferredNormalize``.

    Transforms are recognised by their declared role (``detsdk.data.transform_roles``),
    so a plugin's normalize and pad qualify as the built-in ones do. Returns the new transform list and the ``DeviceNormalize`` to run on the device,
    or the transforms unchanged and None when the pipeline does not end that way.
    """
    transforms = list(transforms)
    tail = transforms[-2:] if len(transforms) >= 2 and role_of(transforms[-1]) == PAD else transforms[-1:]
    if not tail or role_of(tail[0]) != NORMALIZE or any(role_of(t) == PAD and t.pad_value != 0 for t in tail):
        return transforms, None
    position = len(transforms) - len(tail)
    normalize = transforms[position]
    transforms[position] = DeferredNormalize(normalize.mean, normalize.std)
    return transforms, DeviceNormalize(normalize.mean, normalize.std)
