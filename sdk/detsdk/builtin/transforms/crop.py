"""Random crops for training: MMDetection's ``RandomCrop`` and SSD's ``MinIoURandomCrop``.

Both cut a window out of the image, shift boxes into it, clip them to it and
drop the objects left with no area, together with their labels, masks,
``iscrowd`` and ``areas``. They are train-only (``train_only = True``): a
crop throws pixels away, so detections on a cropped image cannot be mapped
back to the whole image, and the recipe validator refuses them in
``data.val`` and ``data.test``. Each records the window in
``meta["crop"]`` as ``(x1, y1, x2, y2)`` in the pixels it saw.

    >>> pipeline = [RandomCrop(crop_size=[384, 600]), Resize(scale=[1333, 800])]  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from detsdk.builtin.transforms.geometric import _is_number, _start
from detsdk.errors import RecipeError

# Per-object arrays that must stay aligned with ``boxes`` when objects are dropped.
INSTANCE_KEYS = ("boxes", "labels", "iscrowd", "areas", "masks")
CROP_TYPES = ("absolute", "absolute_range", "relative", "relative_range")


def crop_sample(sample: dict, window: tuple[int, int, int, int], keep: np.ndarray | None = None) -> dict:
    """Cut ``window`` ``(x1, y1, x2, y2)`` out of a sample; boxes shift and clip, empty ones go.

    ``keep`` (bool per box) drops further objects (the SSD crop keeps only
    boxes whose centre lies inside the window). Records ``meta["crop"]`` and
    ``meta["img_shape"]``.
    """
    sample, meta = _start(sample)
    x1, y1, x2, y2 = window
    sample["image"] = np.ascontiguousarray(sample["image"][y1:y2, x1:x2])
    if "boxes" in sample:
        boxes = np.asarray(sample["boxes"], dtype=np.float32).reshape(-1, 4) - np.array(
            [x1, y1, x1, y1], dtype=np.float32
        )
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, x2 - x1)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, y2 - y1)
        sample["boxes"] = boxes
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        sample = keep_instances(sample, valid if keep is None else valid & keep)
    if "masks" in sample:
        sample["masks"] = np.ascontiguousarray(np.asarray(sample["masks"])[:, y1:y2, x1:x2])
    meta["crop"] = (int(x1), int(y1), int(x2), int(y2))
    meta["img_shape"] = (int(y2 - y1), int(x2 - x1))
    return sample


def keep_instances(sample: dict, keep: np.ndarray) -> dict:
    """The sample with only the objects where ``keep`` is True (every per-object array filtered alike)."""
    sample = dict(sample)
    for key in INSTANCE_KEYS:
        if key in sample and sample[key] is not None:
            sample[key] = np.asarray(sample[key])[keep]
    return sample


class RandomCrop:
    """Crop a random window of a given size (MMDetection's ``RandomCrop``).

    Args:
        crop_size: ``[height, width]``; its meaning depends on ``crop_type``.
        crop_type: ``"absolute"``: exactly ``crop_size`` pixels (less if the image
            is smaller); ``"absolute_range"``: height and width drawn from
            ``[crop_size[0], crop_size[1]]`` pixels; ``"relative"``: fractions of
            the image's height and width; ``"relative_range"``: fractions drawn
            from ``[crop_size[i], 1]``.
        allow_negative_crop: keep a crop that contains no object. When False, a
            crop is drawn again (up to ``max_trials`` times) until one keeps an
            object; if none does, the sample passes through uncropped.
        max_trials: how many windows to try before giving up (when objects are required).

    Boxes are clipped to the window; objects left with no area are dropped.
    """

    train_only = True

    # A list default (never mutated) so that `sdk list` shows it as the recipe would write it.
    def __init__(
        self,
        crop_size: list = [384, 600],  # noqa: B006
        crop_type: str = "absolute",
        allow_negative_crop: bool = False,
        max_trials: int = 10,
    ):
        if crop_type not in CROP_TYPES:
            raise RecipeError(f"random_crop: crop_type = {crop_type!r}: expected one of {', '.join(CROP_TYPES)}")
        if not (isinstance(crop_size, (list, tuple)) and len(crop_size) == 2 and all(_is_number(v) for v in crop_size)):
            raise RecipeError(f"random_crop: crop_size = {crop_size!r}: expected [height, width], two numbers")
        if crop_type.startswith("relative") and not all(0 < v <= 1 for v in crop_size):
            raise RecipeError(f"random_crop: crop_size = {list(crop_size)!r}: {crop_type} expects fractions in (0, 1]")
        if crop_type.startswith("absolute") and not all(v >= 1 and float(v).is_integer() for v in crop_size):
            raise RecipeError(f"random_crop: crop_size = {list(crop_size)!r}: {crop_type} expects whole pixels >= 1")
        if crop_type == "absolute_range" and crop_size[0] > crop_size[1]:
            raise RecipeError(f"random_crop: crop_size = {list(crop_size)!r}: absolute_range expects [low, high]")
        if not isinstance(allow_negative_crop, bool):
            raise RecipeError(f"random_crop: allow_negative_crop = {allow_negative_crop!r}: expected true or false")
        if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
            raise RecipeError(f"random_crop: max_trials = {max_trials!r}: expected an integer >= 1")
        self.crop_size = tuple(float(v) for v in crop_size)
        self.crop_type = crop_type
        self.allow_negative_crop = allow_negative_crop
        self.max_trials = max_trials

    def crop_shape(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` of the window for an image of this size (never larger than the image)."""
        a, b = self.crop_size
        if self.crop_type == "absolute":
            crop_h, crop_w = int(a), int(b)
        elif self.crop_type == "absolute_range":
            crop_h = np.random.randint(min(height, int(a)), min(height, int(b)) + 1)
            crop_w = np.random.randint(min(width, int(a)), min(width, int(b)) + 1)
        elif self.crop_type == "relative":
            crop_h, crop_w = int(height * a + 0.5), int(width * b + 0.5)
        else:
            crop_h = int(height * np.random.uniform(a, 1.0) + 0.5)
            crop_w = int(width * np.random.uniform(b, 1.0) + 0.5)
        return max(min(crop_h, height), 1), max(min(crop_w, width), 1)

    def __call__(self, sample: dict) -> dict:
        """Crop the image and its annotations; objects outside the window are dropped."""
        height, width = sample["image"].shape[:2]
        for _ in range(self.max_trials):
            crop_h, crop_w = self.crop_shape(height, width)
            top = np.random.randint(0, height - crop_h + 1)
            left = np.random.randint(0, width - crop_w + 1)
            cropped = crop_sample(sample, (left, top, left + crop_w, top + crop_h))
            if self.allow_negative_crop or "boxes" not in sample or len(cropped["boxes"]):
                return cropped
        return sample

    def __repr__(self) -> str:
        return (
            f"RandomCrop(crop_size={list(self.crop_size)}, crop_type={self.crop_type!r}, "
            f"allow_negative_crop={self.allow_negative_crop})"
        )


class MinIoURandomCrop:
    """SSD's crop: a window whose IoU with every object is at least a threshold drawn at random.

    Each call draws a threshold from ``min_ious`` plus "no crop"; then up to 50
    windows with sides in ``[min_crop_size, 1]`` of the image's and an aspect
    ratio between 1:2 and 2:1. A window is taken when every box overlaps it by
    at least the threshold (IoU) and some box's centre lies inside it; only
    the boxes whose centre lies inside are kept, clipped to the window.

    Args:
        min_ious: the IoU thresholds to draw from.
        min_crop_size: the smallest window side, as a fraction of the image's.
    """

    train_only = True

    def __init__(self, min_ious: list = [0.1, 0.3, 0.5, 0.7, 0.9], min_crop_size: float = 0.3):  # noqa: B006
        if not (isinstance(min_ious, (list, tuple)) and min_ious and all(_is_number(v) and 0 <= v <= 1 for v in min_ious)):
            raise RecipeError(f"min_iou_random_crop: min_ious = {min_ious!r}: expected a list of IoUs in [0, 1]")
        if not _is_number(min_crop_size) or not 0 < min_crop_size <= 1:
            raise RecipeError(f"min_iou_random_crop: min_crop_size = {min_crop_size!r}: expected a fraction in (0, 1]")
        self.min_ious = [float(v) for v in min_ious]
        self.min_crop_size = float(min_crop_size)
        # None stands for "keep the whole image" (MMDetection's mode 1).
        self.sample_mode = [None, *self.min_ious]

    def __call__(self, sample: dict) -> dict:
        """Crop (or not) as SSD does; returns the sample unchanged when it draws "no crop"."""
        height, width = sample["image"].shape[:2]
        boxes = np.asarray(sample.get("boxes", np.zeros((0, 4))), dtype=np.float32).reshape(-1, 4)
        # Terminates: "no crop" is drawn with probability 1 / len(sample_mode) on every round.
        while True:
            min_iou = self.sample_mode[np.random.randint(len(self.sample_mode))]
            if min_iou is None:
                return sample
            for _ in range(50):
                new_w = np.random.uniform(self.min_crop_size * width, width)
                new_h = np.random.uniform(self.min_crop_size * height, height)
                if not 0.5 <= new_h / new_w <= 2:
                    continue
                left = np.random.uniform(width - new_w)
                top = np.random.uniform(height - new_h)
                window = (int(left), int(top), int(left + new_w), int(top + new_h))
                if window[2] <= window[0] or window[3] <= window[1]:
                    continue
                if len(boxes):
                    overlaps = box_iou(torch.tensor([window], dtype=torch.float32), torch.from_numpy(boxes))[0]
                    if float(overlaps.min()) < min_iou:
                        continue
                    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
                    inside = (
                        (centres[:, 0] > window[0]) & (centres[:, 1] > window[1])
                        & (centres[:, 0] < window[2]) & (centres[:, 1] < window[3])
                    )
                    if not inside.any():
                        continue
                    return crop_sample(sample, window, keep=inside)
                return crop_sample(sample, window)

    def __repr__(self) -> str:
        return f"MinIoURandomCrop(min_ious={self.min_ious}, min_crop_size={self.min_crop_size})"
