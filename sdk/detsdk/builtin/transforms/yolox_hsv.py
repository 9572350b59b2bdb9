"""YOLOX's HSV jitter (MMDetection's ``YOLOXHSVRandomAug``), on det-sdk's RGB images."""

from __future__ import annotations

import cv2
import numpy as np

from detsdk.builtin.transforms.geometric import _start
from detsdk.errors import DataError, RecipeError


class YOLOXHSVRandomAug:
    """Shift hue, saturation and value by random integers, each channel on or off at random.

    Args:
        hue_delta: hue shift bound (OpenCV's hue is 0-179, and wraps).
        saturation_delta, value_delta: saturation and value shift bounds (clipped to 0-255).

    The gains are ``uniform(-1, 1) * delta``, each kept with probability 1/2, truncated to
    integers, as MMDetection; the image must still be uint8 (before ``normalize``).
    """

    def __init__(self, hue_delta: int = 5, saturation_delta: int = 30, value_delta: int = 30):
        deltas = {"hue_delta": hue_delta, "saturation_delta": saturation_delta, "value_delta": value_delta}
        for key, value in deltas.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RecipeError(f"yolox_hsv: {key} = {value!r}: expected an integer >= 0")
        self.deltas = np.array([hue_delta, saturation_delta, value_delta], dtype=np.float64)

    def __call__(self, sample: dict) -> dict:
        """The sample with its image's colours jittered; boxes untouched."""
        sample, _ = _start(sample)
        image = sample["image"]
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError("yolox_hsv: expected an H×W×3 uint8 image; put it before 'normalize'")
        gains = np.random.uniform(-1, 1, 3) * self.deltas
        gains = (gains * np.random.randint(0, 2, 3)).astype(np.int16)
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] + gains[1], 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] + gains[2], 0, 255)
        sample["image"] = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
        return sample

    def __repr__(self) -> str:
        h, s, v = (int(d) for d in self.deltas)
        return f"YOLOXHSVRandomAug(hue_delta={h}, saturation_delta={s}, value_delta={v})"
