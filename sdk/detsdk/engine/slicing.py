"""Sliced inference (SAHI's method): detect on overlapping windows of a large image, then merge.

Small objects in a large image shrink below what a detector sees once the
image is resized to its input size. Cutting the image into overlapping
``size`` windows, detecting on each at full resolution (and, with
``full_image``, on the whole image too, for the large objects), shifting
each window's boxes back and merging everything with class-wise NMS
(``torchvision.ops.batched_nms``, as TTA merges) finds them.

Works on any "detect on these images" callable, so the PyTorch ``Detector``
and an ONNX Runtime one slice the same way::

    [eval]
    slice = { size = [640, 640], overlap = 0.2, full_image = true }

    >>> detector.predict(image, slice=640)                              # doctest: +SKIP
    >>> sliced_detections(detect, image, SliceSettings(size=(640, 640)))  # doctest: +SKIP

``size`` is ``[height, width]`` (one number: a square); ``overlap`` the
fraction of a window shared with its neighbour. Windows at the right and
bottom edges are moved back inside the image, as SAHI does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from detsdk.engine.tta import merge_detections
from detsdk.recipe.slice_options import SliceSettings, slice_settings  # noqa: F401 (the engine's slicing names)

# Images in, one detection dict each (boxes x1 y1 x2 y2 in that image's pixels, scores, labels, optional masks).
DetectImages = Callable[[list[np.ndarray]], list[dict[str, np.ndarray]]]


def slice_windows(height: int, width: int, size: tuple[int, int], overlap: float) -> list[tuple[int, int, int, int]]:
    """Windows ``(x1, y1, x2, y2)`` covering the image, row by row; a window never leaves the image."""
    rows = _starts(height, size[0], overlap)
    columns = _starts(width, size[1], overlap)
    return [(x, y, min(x + size[1], width), min(y + size[0], height)) for y in rows for x in columns]


def _starts(length: int, window: int, overlap: float) -> list[int]:
    if length <= window:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    starts = list(range(0, length - window, step))
    starts.append(length - window)  # the last window ends at the border
    return sorted(set(starts))


def sliced_detections(detect: DetectImages, image: np.ndarray, settings: SliceSettings) -> dict[str, np.ndarray]:
    """One image's detections from its windows (and the whole image), in its pixels, merged by class-wise NMS."""
    height, width = image.shape[:2]
    windows = slice_windows(height, width, settings.size, settings.overlap)
    found = []
    for batch in _chunks(windows, settings.batch_size):
        crops = [np.ascontiguousarray(image[y1:y2, x1:x2]) for x1, y1, x2, y2 in batch]
        for (x1, y1, x2, y2), detection in zip(batch, detect(crops)):
            found.append(_shifted(detection, x1, y1, (height, width)))
    if settings.full_image and len(windows) > 1:
        found.extend(detect([image]))
    return merge_detections(found, settings.iou_threshold, settings.max_per_image)


def _shifted(detection: dict[str, np.ndarray], x: int, y: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """A window's detections moved into the whole image (masks pasted into an image-sized canvas)."""
    shifted = dict(detection)
    shifted["boxes"] = np.asarray(detection["boxes"], dtype=np.float64).reshape(-1, 4) + np.array([x, y, x, y])
    if detection.get("masks") is not None:
        masks = np.asarray(detection["masks"])
        canvas = np.zeros((len(masks), *size), dtype=masks.dtype)
        canvas[:, y : y + masks.shape[1], x : x + masks.shape[2]] = masks
        shifted["masks"] = canvas
    return shifted


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]




def evaluate_sliced(detect: DetectImages, dataset: Any, metric: Any, settings: SliceSettings, progress=None) -> dict:
    """Feed ``metric`` every image of ``dataset`` (raw samples, original pixels) detected by slicing."""
    for index in range(len(dataset)):
        sample = dataset[index]
        annotations = {k: v for k, v in sample.items() if k != "image"}
        annotations["meta"] = {"ori_shape": tuple(sample["image"].shape[:2]), **sample.get("meta", {})}
        metric.process([annotations], [sliced_detections(detect, sample["image"], settings)])
        if progress is not None:
            progress.update(1)
    return metric.compute()
