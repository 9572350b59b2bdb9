"""Mosaic (YOLOv4/YOLOX/RTMDet): four samples around a random centre on a ``2h × 2w`` canvas.

As MMDetection's ``Mosaic`` and, with ``max_cached_images > 0``, ``CachedMosaic``.
"""

from __future__ import annotations

import cv2
import numpy as np

from detsdk.builtin.transforms.geometric import _is_number, _start
from detsdk.builtin.transforms.sample_cache import SampleCache
from detsdk.errors import RecipeError


def check_scale(name: str, value) -> tuple[int, int]:
    """``[width, height]`` of positive integers, as MMDetection's ``img_scale``."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise RecipeError(f"{name}: img_scale = {value!r}: expected [width, height], two positive integers")
    return int(value[0]), int(value[1])


def check_range(name: str, key: str, value) -> tuple[float, float]:
    """``[low, high]`` with ``0 < low <= high``."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)
            and 0 < value[0] <= value[1]):
        raise RecipeError(f"{name}: {key} = {value!r}: expected [low, high] with 0 < low <= high")
    return float(value[0]), float(value[1])


def check_probability(name: str, value) -> float:
    """A number in [0, 1]."""
    if not _is_number(value) or not 0 <= value <= 1:
        raise RecipeError(f"{name}: prob = {value!r}: expected a probability between 0 and 1")
    return float(value)


def check_cache(name: str, max_cached_images) -> int:
    """0 (load other samples) or a cache size of at least 4 (MMDetection asks for >= 4)."""
    if isinstance(max_cached_images, bool) or not isinstance(max_cached_images, int) or (
        max_cached_images != 0 and max_cached_images < 4
    ):
        raise RecipeError(
            f"{name}: max_cached_images = {max_cached_images!r}: expected 0 (draw other samples from the "
            "dataset) or a cache size >= 4"
        )
    return max_cached_images


def resized(image: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
    """``image`` (H×W×C, C may be many) at ``width × height``."""
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    if image.shape[2] > 512:  # cv2.resize takes at most 512 channels
        chunks = [resized(image[..., i : i + 512], width, height, nearest) for i in range(0, image.shape[2], 512)]
        return np.concatenate(chunks, 2)
    out = cv2.resize(image, (width, height), interpolation=interpolation)
    return out.reshape(height, width, -1)


def instances(sample: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``boxes`` (N×4 float32), ``labels`` and ``iscrowd`` of a sample (empty when it has none)."""
    boxes = np.asarray(sample.get("boxes", np.zeros((0, 4))), np.float32).reshape(-1, 4)
    labels = np.asarray(sample.get("labels", np.zeros(0)), np.int64).reshape(-1)
    crowd = sample.get("iscrowd")
    crowd = np.zeros(len(labels), bool) if crowd is None else np.asarray(crowd, bool).reshape(-1)
    return boxes, labels, crowd


def clip_and_keep(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the image, and which of them still reach into it (MMDetection's ``is_inside``)."""
    boxes = boxes.copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    keep = (boxes[:, 0] < width) & (boxes[:, 1] < height) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes, keep


class Mosaic:
    """Paste the sample and three others, each fitted into ``img_scale``, around a random centre.

    Args:
        img_scale: ``[width, height]``; the mosaic is ``2 * height × 2 * width``.
        center_ratio_range: the centre is drawn from this range times ``img_scale``.
        pad_val: the canvas colour (114, YOLOX's grey).
        prob: the probability of making a mosaic (else the sample passes unchanged).
        max_cached_images: 0 draws the three others from the dataset (``extra_samples = 3``,
            seeded per sample, so exact resume holds); ``n >= 4`` mixes with this worker's
            ``n`` most recent samples instead (MMDetection's ``CachedMosaic``: no extra loads,
            but what is mixed depends on the worker's history).
        random_pop: with the cache, evict a random sample when full (else the oldest).

    Boxes are scaled, shifted, clipped to the canvas; objects left outside go, with their
    labels, ``iscrowd`` and masks (kept when every sample has them). Train only.
    """

    train_only = True
    mixes_samples = True

    def __init__(
        self,
        img_scale: list[int] = [640, 640],  # noqa: B006 (never mutated)
        center_ratio_range: list[float] = [0.5, 1.5],  # noqa: B006
        pad_val: float = 114.0,
        prob: float = 1.0,
        max_cached_images: int = 0,
        random_pop: bool = True,
    ):
        self.img_scale = check_scale("mosaic", img_scale)
        self.center_ratio_range = check_range("mosaic", "center_ratio_range", center_ratio_range)
        if not _is_number(pad_val):
            raise RecipeError(f"mosaic: pad_val = {pad_val!r}: expected a number")
        self.pad_val = float(pad_val)
        self.prob = check_probability("mosaic", prob)
        self.max_cached_images = check_cache("mosaic", max_cached_images)
        self.cache = SampleCache(max_cached_images, random_pop) if max_cached_images else None
        self.extra_samples = 0 if self.cache is not None else 3

    def _others(self, sample: dict) -> list[dict] | None:
        if self.cache is None:
            return sample.pop("mix_samples")
        self.cache.add(sample)
        if len(self.cache) <= 4:
            return None
        return [self.cache.pick() for _ in range(3)]

    def __call__(self, sample: dict) -> dict:
        """The mosaic of this sample and three others, or the sample when ``prob`` says no."""
        sample, meta = _start(sample)
        others = self._others(sample)
        if others is None or np.random.uniform(0, 1) > self.prob:
            return sample
        width, height = self.img_scale
        canvas_w, canvas_h = 2 * width, 2 * height
        image = sample["image"]
        canvas = np.full((canvas_h, canvas_w) + image.shape[2:], self.pad_val, dtype=image.dtype)
        center_x = int(np.random.uniform(*self.center_ratio_range) * width)
        center_y = int(np.random.uniform(*self.center_ratio_range) * height)
        pieces = [sample] + list(others)
        with_masks = all("masks" in piece for piece in pieces)
        all_boxes, all_labels, all_crowd, all_masks = [], [], [], []
        for corner, piece in enumerate(pieces):
            piece_image = piece["image"]
            h, w = piece_image.shape[:2]
            ratio = min(height / h, width / w)
            new_w, new_h = int(w * ratio), int(h * ratio)
            paste, crop = self._placement(corner, center_x, center_y, new_w, new_h)
            (px1, py1, px2, py2), (cx1, cy1, cx2, cy2) = paste, crop
            canvas[py1:py2, px1:px2] = resized(piece_image.reshape(h, w, -1), new_w, new_h).reshape(
                (new_h, new_w) + piece_image.shape[2:]
            )[cy1:cy2, cx1:cx2]
            boxes, labels, crowd = instances(piece)
            boxes = boxes * ratio + np.array([px1 - cx1, py1 - cy1] * 2, np.float32)
            all_boxes.append(boxes)
            all_labels.append(labels)
            all_crowd.append(crowd)
            if with_masks:
                masks = np.asarray(piece["masks"], np.uint8)
                placed = np.zeros((len(masks), canvas_h, canvas_w), np.uint8)
                if len(masks):
                    scaled = resized(masks.transpose(1, 2, 0), new_w, new_h, nearest=True).transpose(2, 0, 1)
                    placed[:, py1:py2, px1:px2] = scaled[:, cy1:cy2, cx1:cx2]
                all_masks.append(placed)
        boxes, keep = clip_and_keep(np.concatenate(all_boxes), canvas_w, canvas_h)
        sample["image"] = canvas
        sample["boxes"] = boxes[keep]
        sample["labels"] = np.concatenate(all_labels)[keep]
        sample["iscrowd"] = np.concatenate(all_crowd)[keep]
        sample.pop("areas", None)
        sample.pop("masks", None)
        if with_masks:
            sample["masks"] = np.concatenate(all_masks)[keep]
        meta["img_shape"] = (canvas_h, canvas_w)
        meta["mosaic"] = True
        return sample

    def _placement(self, corner: int, cx: int, cy: int, w: int, h: int):
        """Where piece ``corner`` (top-left, top-right, bottom-left, bottom-right) lands, and what of it shows."""
        canvas_w, canvas_h = 2 * self.img_scale[0], 2 * self.img_scale[1]
        if corner == 0:
            x1, y1, x2, y2 = max(cx - w, 0), max(cy - h, 0), cx, cy
            crop = (w - (x2 - x1), h - (y2 - y1), w, h)
        elif corner == 1:
            x1, y1, x2, y2 = cx, max(cy - h, 0), min(cx + w, canvas_w), cy
            crop = (0, h - (y2 - y1), min(w, x2 - x1), h)
        elif corner == 2:
            x1, y1, x2, y2 = max(cx - w, 0), cy, cx, min(canvas_h, cy + h)
            crop = (w - (x2 - x1), 0, w, min(y2 - y1, h))
        else:
            x1, y1, x2, y2 = cx, cy, min(cx + w, canvas_w), min(canvas_h, cy + h)
            crop = (0, 0, min(w, x2 - x1), min(y2 - y1, h))
        return (x1, y1, x2, y2), crop

    def __repr__(self) -> str:
        return (
            f"Mosaic(img_scale={list(self.img_scale)}, center_ratio_range={list(self.center_ratio_range)}, "
            f"pad_val={self.pad_val}, prob={self.prob}, max_cached_images={self.max_cached_images})"
        )
