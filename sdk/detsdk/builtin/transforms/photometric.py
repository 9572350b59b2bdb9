"""Photometric transforms: colour jitter on uint8 RGB images, and normalization to float32.

Boxes and masks are untouched. ``photometric_distortion`` expects uint8 RGB,
so it goes before ``normalize`` in a pipeline.

    >>> pipeline = [PhotometricDistortion(), Normalize()]  # doctest: +SKIP
"""

from __future__ import annotations

from numbers import Real

import cv2
import numpy as np

from detsdk.errors import DataError, RecipeError

IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_range(name: str, value) -> tuple[float, float]:
    if not (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(_is_number(v) for v in value)
        and 0 <= value[0] <= value[1]
    ):
        raise RecipeError(f"photometric_distortion: {name} = {value!r}: expected [low, high] with 0 <= low <= high")
    return float(value[0]), float(value[1])


class PhotometricDistortion:
    """Random brightness, contrast, saturation and hue, each applied with probability 0.5.

    Follows MMDetection's ``PhotometricDistortion``: brightness, then contrast
    either first or last (at random), with saturation and hue in between in
    HSV space. Values are clipped to [0, 255] after each step.

    Args:
        brightness_delta: add a value drawn from ``[-delta, delta]`` to every pixel.
        contrast_range: multiply every pixel by a factor drawn from ``[low, high]``.
        saturation_range: multiply the saturation by a factor drawn from ``[low, high]``.
        hue_delta: shift the hue by an angle drawn from ``[-delta, delta]`` degrees (0 to 180).
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: list = [0.5, 1.5],  # noqa: B006 (never mutated)
        saturation_range: list = [0.5, 1.5],  # noqa: B006
        hue_delta: int = 18,
    ):
        if not _is_number(brightness_delta) or not 0 <= brightness_delta <= 255:
            raise RecipeError(f"photometric_distortion: brightness_delta = {brightness_delta!r}: expected 0 to 255")
        if not _is_number(hue_delta) or not 0 <= hue_delta <= 180:
            raise RecipeError(f"photometric_distortion: hue_delta = {hue_delta!r}: expected 0 to 180 (degrees)")
        self.brightness_delta = float(brightness_delta)
        self.contrast_range = _check_range("contrast_range", contrast_range)
        self.saturation_range = _check_range("saturation_range", saturation_range)
        self.hue_delta = float(hue_delta)

    def __call__(self, sample: dict) -> dict:
        """Distort ``sample["image"]`` (uint8 RGB in, uint8 RGB out)."""
        image = sample["image"]
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise RecipeError(
                f"photometric_distortion: expected a uint8 RGB image, got {image.dtype} of shape {image.shape}; "
                "put it before 'normalize' in the pipeline"
            )
        # Draw every random number in a fixed order, whatever is applied, like MMDetection.
        brightness = np.random.uniform(-self.brightness_delta, self.brightness_delta) if np.random.randint(2) else None
        contrast_first = bool(np.random.randint(2))
        contrast = np.random.uniform(*self.contrast_range) if np.random.randint(2) else None
        saturation = np.random.uniform(*self.saturation_range) if np.random.randint(2) else None
        hue = np.random.uniform(-self.hue_delta, self.hue_delta) if np.random.randint(2) else None

        out = image.astype(np.float32)
        if brightness is not None:
            out = np.clip(out + brightness, 0, 255)
        if contrast is not None and contrast_first:
            out = np.clip(out * contrast, 0, 255)
        if saturation is not None or hue is not None:
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)  # float32: H in degrees [0, 360), S in [0, 1]
            if saturation is not None:
                hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 1)
            if hue is not None:
                hsv[..., 0] = np.mod(hsv[..., 0] + hue, 360)
            out = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 255)
        if contrast is not None and not contrast_first:
            out = np.clip(out * contrast, 0, 255)
        sample = dict(sample)
        sample["image"] = np.round(out).astype(np.uint8)
        return sample

    def __repr__(self) -> str:
        return (
            f"PhotometricDistortion(brightness_delta={self.brightness_delta}, "
            f"contrast_range={list(self.contrast_range)}, saturation_range={list(self.saturation_range)}, "
            f"hue_delta={self.hue_delta})"
        )


class Normalize:
    """Turn a uint8 RGB image into float32 ``(x - mean) / std``, per channel.

    Args:
        mean: per-channel mean, RGB order (ImageNet's by default).
        std: per-channel standard deviation, RGB order, each > 0.

    Records ``meta["normalize"] = {"mean": [...], "std": [...]}`` so that a
    viewer can undo it (``image * std + mean``).
    """

    transform_role = "normalize"  # detsdk.data.transform_roles: has mean and std; may run on the device

    def __init__(self, mean: list = IMAGENET_MEAN, std: list = IMAGENET_STD):  # noqa: B006 (never mutated)
        for name, values in (("mean", mean), ("std", std)):
            if not (isinstance(values, (list, tuple)) and len(values) == 3 and all(_is_number(v) for v in values)):
                raise RecipeError(f"normalize: {name} = {values!r}: expected three numbers (R, G, B)")
        if any(v <= 0 for v in std):
            raise RecipeError(f"normalize: std = {list(std)!r}: expected three numbers > 0")
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self._mean = np.array(self.mean, dtype=np.float32)
        self._inverse_std = 1.0 / np.array(self.std, dtype=np.float32)
        # uint8 in: a per-channel lookup table, one pass over the pixels (same float32 values).
        self._table = ((np.arange(256, dtype=np.float32)[:, None] - self._mean) * self._inverse_std).reshape(256, 1, 3)

    def __call__(self, sample: dict) -> dict:
        """Normalize ``sample["image"]`` to float32 and record the statistics in ``meta``."""
        image = sample["image"]
        if image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"normalize: expected an H×W×3 image, got shape {image.shape}")
        meta = dict(sample.get("meta") or {})
        if "normalize" in meta:
            raise RecipeError("normalize: the image is already normalized; the pipeline has 'normalize' twice")
        sample = dict(sample)
        if image.dtype == np.uint8:
            sample["image"] = cv2.LUT(np.ascontiguousarray(image), self._table)
        else:
            sample["image"] = (image.astype(np.float32) - self._mean) * self._inverse_std
        meta["normalize"] = {"mean": list(self.mean), "std": list(self.std)}
        sample["meta"] = meta
        return sample

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"
