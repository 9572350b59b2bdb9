"""MixUp for detection (YOLOX/RTMDet): blend the sample 50/50 with another, jittered, flipped, cropped.

As MMDetection's ``MixUp`` and, with ``max_cached_images > 0``, ``CachedMixUp``.
"""

from __future__ import annotations

import numpy as np

from detsdk.builtin.transforms.geometric import _is_number, _start, flip_boxes
from detsdk.builtin.transforms.mosaic import (
    check_cache, check_probability, check_range, check_scale, clip_and_keep, instances, resized,
)
from detsdk.builtin.transforms.sample_cache import SampleCache
from detsdk.errors import RecipeError


class MixUp:
    """Average the sample with another one that was fitted into ``img_scale``, scaled by a random
    jitter, flipped at random and cropped at a random offset to the sample's size.

    Args:
        img_scale: ``[width, height]`` the other sample is fitted into first.
        ratio_range: the jitter's range (RTMDet: ``[1.0, 1.0]``, none).
        flip_ratio: the other sample is flipped when a uniform draw exceeds it (so with
            probability ``1 - flip_ratio``), as MMDetection.
        pad_val: the colour around the other sample.
        prob: the probability of mixing (MMDetection's ``CachedMixUp``; RTMDet-tiny 0.5).
        max_cached_images: 0 draws the other sample from the dataset (``extra_samples = 1``,
            seeded per sample: exact resume holds); ``n >= 4`` mixes with this worker's recent
            samples (``CachedMixUp``), trying ``max_iters`` picks for one with objects.
        random_pop: with the cache, evict a random sample when full (else the oldest).
        max_iters: with the cache, how many picks to try for a sample with objects.

    The result has both samples' objects (the other's boxes jittered, flipped, shifted and
    clipped; those left outside go). A partner without objects leaves the sample unchanged.
    Masks are not mixed: a sample with masks passes through unchanged. Train only.
    """

    train_only = True
    mixes_samples = True

    def __init__(
        self,
        img_scale: list[int] = [640, 640],  # noqa: B006 (never mutated)
        ratio_range: list[float] = [0.5, 1.5],  # noqa: B006
        flip_ratio: float = 0.5,
        pad_val: float = 114.0,
        prob: float = 1.0,
        max_cached_images: int = 0,
        random_pop: bool = True,
        max_iters: int = 15,
    ):
        self.img_scale = check_scale("mixup", img_scale)
        self.ratio_range = check_range("mixup", "ratio_range", ratio_range)
        if not _is_number(flip_ratio) or not 0 <= flip_ratio <= 1:
            raise RecipeError(f"mixup: flip_ratio = {flip_ratio!r}: expected a number between 0 and 1")
        if not _is_number(pad_val):
            raise RecipeError(f"mixup: pad_val = {pad_val!r}: expected a number")
        if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
            raise RecipeError(f"mixup: max_iters = {max_iters!r}: expected an integer >= 1")
        self.flip_ratio = float(flip_ratio)
        self.pad_val = float(pad_val)
        self.prob = check_probability("mixup", prob)
        self.max_cached_images = check_cache("mixup", max_cached_images)
        self.max_iters = max_iters
        self.cache = SampleCache(max_cached_images, random_pop) if max_cached_images else None
        self.extra_samples = 0 if self.cache is not None else 1

    def _other(self, sample: dict) -> dict | None:
        if self.cache is None:
            return sample.pop("mix_samples")[0]
        self.cache.add(sample)
        if len(self.cache) <= 1:
            return None
        if np.random.uniform(0, 1) > self.prob:
            return None
        for _ in range(self.max_iters):
            other = self.cache.pick()
            if len(instances(other)[0]):
                return other
        return other

    def __call__(self, sample: dict) -> dict:
        """The blend of this sample and another, or the sample unchanged (no partner objects, ``prob``, masks)."""
        sample, meta = _start(sample)
        other = self._other(sample)
        if other is None or (self.cache is None and np.random.uniform(0, 1) > self.prob) or "masks" in sample:
            return sample
        other_boxes, other_labels, other_crowd = instances(other)
        if not len(other_boxes):
            return sample
        jitter = np.random.uniform(*self.ratio_range)
        flip = np.random.uniform(0, 1) > self.flip_ratio
        width, height = self.img_scale
        other_image = other["image"]
        canvas = np.full((height, width) + other_image.shape[2:], self.pad_val, dtype=np.float32)
        ratio = min(height / other_image.shape[0], width / other_image.shape[1])
        fitted_w, fitted_h = int(other_image.shape[1] * ratio), int(other_image.shape[0] * ratio)
        fitted = resized(other_image.reshape(*other_image.shape[:2], -1), fitted_w, fitted_h)
        canvas[:fitted_h, :fitted_w] = fitted.reshape((fitted_h, fitted_w) + other_image.shape[2:])
        ratio *= jitter
        canvas = resized(canvas.reshape(height, width, -1), int(width * jitter), int(height * jitter))
        if flip:
            canvas = canvas[:, ::-1]
        image = sample["image"]
        origin_h, origin_w = canvas.shape[:2]
        target_h, target_w = image.shape[:2]
        padded = np.full((max(origin_h, target_h), max(origin_w, target_w), canvas.shape[2]), self.pad_val, np.float32)
        padded[:origin_h, :origin_w] = canvas
        y_offset = np.random.randint(0, padded.shape[0] - target_h + 1) if padded.shape[0] > target_h else 0
        x_offset = np.random.randint(0, padded.shape[1] - target_w + 1) if padded.shape[1] > target_w else 0
        cropped = padded[y_offset : y_offset + target_h, x_offset : x_offset + target_w].reshape(image.shape)

        boxes = other_boxes * ratio
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, origin_w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, origin_h)
        if flip:
            boxes = flip_boxes(boxes, (origin_h, origin_w), "horizontal")
        boxes = boxes - np.array([x_offset, y_offset] * 2, np.float32)
        boxes, keep_other = clip_and_keep(boxes, target_w, target_h)
        own_boxes, own_labels, own_crowd = instances(sample)
        own_boxes, keep_own = clip_and_keep(own_boxes, target_w, target_h)
        sample["image"] = (0.5 * image.astype(np.float32) + 0.5 * cropped).astype(np.uint8)
        sample["boxes"] = np.concatenate([own_boxes[keep_own], boxes[keep_other]])
        sample["labels"] = np.concatenate([own_labels[keep_own], other_labels[keep_other]])
        sample["iscrowd"] = np.concatenate([own_crowd[keep_own], other_crowd[keep_other]])
        sample.pop("areas", None)
        meta["mixup"] = True
        return sample

    def __repr__(self) -> str:
        return (
            f"MixUp(img_scale={list(self.img_scale)}, ratio_range={list(self.ratio_range)}, "
            f"flip_ratio={self.flip_ratio}, pad_val={self.pad_val}, prob={self.prob}, "
            f"max_cached_images={self.max_cached_images})"
        )
