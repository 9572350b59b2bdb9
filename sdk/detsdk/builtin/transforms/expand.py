"""SSD's zoom-out: place the image on a larger canvas filled with the mean colour.

    >>> pipeline = [Expand(ratio_range=[1, 4]), MinIoURandomCrop(), Resize(scale=[300, 300], keep_ratio=False)]  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from detsdk.builtin.transforms.geometric import _is_number, _start
from detsdk.builtin.transforms.photometric import IMAGENET_MEAN
from detsdk.errors import RecipeError


class Expand:
    """With probability ``prob``, put the image at a random place on a canvas ``ratio`` times larger.

    Objects become smaller relative to the image, which helps detectors such
    as SSD with small objects. Boxes shift by the image's offset; masks are
    expanded with zeros. Train-only (``train_only = True``): detections on
    the canvas cannot be mapped back once the image is resized. Records
    ``meta["expand"]`` as ``(left, top, ratio)``.

    Args:
        mean: the canvas colour, RGB (ImageNet's mean, which ``normalize`` turns to 0).
        ratio_range: ``[low, high]``, the canvas-to-image side ratio drawn uniformly, ``1 <= low <= high``.
        prob: the probability of expanding.
    """

    train_only = True

    def __init__(
        self,
        mean: list = IMAGENET_MEAN,  # noqa: B006 (never mutated)
        ratio_range: list = [1, 4],  # noqa: B006
        prob: float = 0.5,
    ):
        if not (isinstance(mean, (list, tuple)) and len(mean) == 3 and all(_is_number(v) and 0 <= v <= 255 for v in mean)):
            raise RecipeError(f"expand: mean = {mean!r}: expected three numbers 0 to 255 (R, G, B)")
        if not (
            isinstance(ratio_range, (list, tuple))
            and len(ratio_range) == 2
            and all(_is_number(v) for v in ratio_range)
            and 1 <= ratio_range[0] <= ratio_range[1]
        ):
            raise RecipeError(f"expand: ratio_range = {ratio_range!r}: expected [low, high] with 1 <= low <= high")
        if not _is_number(prob) or not 0 <= prob <= 1:
            raise RecipeError(f"expand: prob = {prob!r}: expected a probability between 0 and 1")
        self.mean = [float(v) for v in mean]
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.prob = float(prob)

    def __call__(self, sample: dict) -> dict:
        """Expand (or not) the image, boxes and masks."""
        if np.random.uniform(0, 1) > self.prob:
            return sample
        sample, meta = _start(sample)
        image = sample["image"]
        height, width = image.shape[:2]
        ratio = np.random.uniform(*self.ratio_range)
        new_height, new_width = int(height * ratio), int(width * ratio)
        left = int(np.random.uniform(0, new_width - width))
        top = int(np.random.uniform(0, new_height - height))
        canvas = np.empty((new_height, new_width) + image.shape[2:], dtype=image.dtype)
        canvas[...] = np.asarray(self.mean, dtype=np.float32).round().astype(image.dtype)
        canvas[top : top + height, left : left + width] = image
        sample["image"] = canvas
        if "boxes" in sample:
            sample["boxes"] = np.asarray(sample["boxes"], dtype=np.float32).reshape(-1, 4) + np.array(
                [left, top, left, top], dtype=np.float32
            )
        if "masks" in sample:
            masks = np.asarray(sample["masks"])
            expanded = np.zeros((masks.shape[0], new_height, new_width), dtype=masks.dtype)
            expanded[:, top : top + height, left : left + width] = masks
            sample["masks"] = expanded
        meta["expand"] = (left, top, float(ratio))
        meta["img_shape"] = (new_height, new_width)
        return sample

    def __repr__(self) -> str:
        return f"Expand(mean={self.mean}, ratio_range={list(self.ratio_range)}, prob={self.prob})"
