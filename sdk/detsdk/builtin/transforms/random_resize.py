"""Large-scale jitter: resize to ``scale`` times a ratio drawn at random (MMDetection's ``RandomResize``)."""

from __future__ import annotations

import numpy as np

from detsdk.builtin.transforms.geometric import Resize
from detsdk.builtin.transforms.mosaic import check_range
from detsdk.errors import RecipeError


class RandomResize(Resize):
    """Resize to ``scale * r``, ``r`` drawn uniformly from ``ratio_range`` per sample.

    Args:
        scale: ``[width, height]`` before the ratio (RTMDet: ``[1280, 1280]`` after a mosaic,
            ``[640, 640]`` in stage two).
        ratio_range: ``[low, high]`` (RTMDet-tiny and s ``[0.5, 2.0]``, m/l/x ``[0.1, 2.0]``).
        keep_ratio: fit inside the scaled size keeping the aspect ratio (else exactly it).

    Boxes and masks follow as for ``resize``; ``meta`` records ``img_shape`` and ``scale_factor``.
    """

    def __init__(
        self,
        scale: list = [640, 640],  # noqa: B006 (never mutated)
        ratio_range: list[float] = [0.5, 2.0],  # noqa: B006
        keep_ratio: bool = True,
    ):
        pair = isinstance(scale, (list, tuple)) and len(scale) == 2
        if not (pair and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in scale)):
            raise RecipeError(f"random_resize: scale = {scale!r}: expected [width, height], two positive integers")
        super().__init__(scale=list(scale), keep_ratio=keep_ratio)
        self.ratio_range = check_range("random_resize", "ratio_range", ratio_range)

    def sample_scale(self) -> tuple[float, float]:
        """``(width, height)`` scaled by a ratio from ``ratio_range`` (integers, as MMDetection)."""
        low, high = self.ratio_range
        ratio = np.random.random_sample() * (high - low) + low
        width, height = self.scales[0]
        return float(int(width * ratio)), float(int(height * ratio))

    def __repr__(self) -> str:
        return (
            f"RandomResize(scale={list(self.scales[0])}, ratio_range={list(self.ratio_range)}, "
            f"keep_ratio={self.keep_ratio})"
        )
