"""Painted samples: solid-colour objects whose boxes and masks can be checked against the pixels.

A transform that moves the image must move the boxes and masks the same way;
after it, every box and mask of a painted sample must still cover its own
colour, and no other. The check compares colours as the transform left them
(a photometric change or ``normalize`` recolours everything alike), so it
works on geometric and photometric transforms.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# Four objects on a 96x128 (h x w) image, far apart in colour from each other and from the background.
PAINTED_OBJECTS = [((6, 8, 40, 30), (255, 0, 0)), ((50, 10, 110, 60), (0, 255, 255)),
                   ((10, 45, 45, 90), (0, 0, 255)), ((70, 70, 120, 92), (255, 255, 0))]
PAINTED_BACKGROUND = (40, 40, 40)
PAINTED_SIZE = (96, 128)
COLOURS = [(230, 40, 40), (40, 230, 40), (40, 40, 230), (230, 230, 40)]
# Colour distance, in the painted image's units, under which two pixels count as the same colour.
_TOLERANCE = 40.0


def painted_sample(objects, height: int, width: int, background=(0, 0, 0), file: str = "painted.png") -> dict:
    """A sample of solid-colour rectangles ``((x1, y1, x2, y2), rgb)`` with their boxes, labels and masks.

    Label ``i`` is object ``i``. Alignment tests transform it and check each box
    (and mask) still covers its colour.

    >>> sample = painted_sample(PAINTED_OBJECTS, 96, 128, PAINTED_BACKGROUND)
    >>> sample["boxes"].shape, sample["masks"].shape
    ((4, 4), (4, 96, 128))
    """
    image = np.full((height, width, 3), background, np.uint8)
    masks = np.zeros((len(objects), height, width), np.uint8)
    for i, ((x1, y1, x2, y2), colour) in enumerate(objects):
        image[y1:y2, x1:x2] = colour
        masks[i, y1:y2, x1:x2] = 1
    return {
        "image": image,
        "boxes": np.array([box for box, _ in objects], np.float32),
        "labels": np.arange(len(objects), dtype=np.int64),
        "masks": masks,
        "iscrowd": np.zeros(len(objects), bool),
        "meta": {"image_id": 1, "file": file, "ori_shape": (height, width)},
    }


def default_painted_sample() -> dict:
    """The kit's painted sample: ``PAINTED_OBJECTS`` on a 96x128 image."""
    return painted_sample(PAINTED_OBJECTS, *PAINTED_SIZE, PAINTED_BACKGROUND)


def draw(path: Path, size: tuple[int, int], boxes: list[tuple[float, float, float, float]], labels: list[int]) -> None:
    """Write a ``size`` (h, w) image file with each x1 y1 x2 y2 box filled in its label's colour (dataset trees)."""
    import cv2

    image = np.full((*size, 3), 20, np.uint8)
    for (x1, y1, x2, y2), label in zip(boxes, labels):
        image[int(y1) : int(y2), int(x1) : int(x2)] = COLOURS[label % len(COLOURS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def random_objects(rng: np.random.Generator, count: int, num_classes: int, size: int = 64) -> list[tuple]:
    """``count`` (label, x1, y1, x2, y2) boxes of 14-30 px inside a ``size`` square."""
    objects = []
    for _ in range(count):
        w, h = rng.integers(14, 30, size=2)
        x1, y1 = rng.integers(0, size - w), rng.integers(0, size - h)
        objects.append((int(rng.integers(num_classes)), int(x1), int(y1), int(x1 + w), int(y1 + h)))
    return objects


def alignment_problems(before: dict, after: dict) -> list[str]:
    """What is wrong with ``after`` (a transformed painted sample) as an image of ``before``'s objects.

    Label ``i`` marks painted object ``i``. Each kept object's box interior and
    eroded mask must be one colour (95% of pixels), the same colour for both,
    unlike the background's and every other label's; and that colour must not
    show outside the boxes of its label (copies of one object, as Mosaic makes, share it). Colours are compared as ``after`` has them, with a
    tolerance scaled by how much the transform stretched the image's range.
    Objects that became too small to judge (under 2x2 pixels inside) are left out.
    """
    image = np.asarray(after["image"], dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        return [f"image has shape {image.shape}, expected H x W x 3"]
    tolerance = _TOLERANCE * _range_scale(np.asarray(before["image"], np.float64), image)
    boxes = np.asarray(after["boxes"], np.float64).reshape(-1, 4)
    labels = np.asarray(after["labels"]).reshape(-1)
    masks = after.get("masks")
    height, width = image.shape[:2]
    covered = np.zeros((height, width), bool)
    for box in boxes:
        covered[_window(box, height, width, grow=2)] = True
    if masks is not None:
        covered |= np.asarray(masks).reshape(-1, height, width).astype(bool).any(axis=0)
    outside = image[~covered]
    if not len(outside):
        return []
    background = np.median(outside, axis=0)
    problems, colours = [], {}
    for index, (box, label) in enumerate(zip(boxes, labels)):
        name = f"object {index} (label {int(label)}, box {_shown(box)})"
        inner = image[_window(box, height, width, grow=-1)].reshape(-1, 3)
        if len(inner) < 4:
            continue
        colour = np.median(inner, axis=0)
        if not _uniform(inner, colour, tolerance):
            problems.append(f"{name}: the box holds pixels of several colours (not on its painted object)")
            continue
        if np.linalg.norm(colour - background) <= 2 * tolerance:
            problems.append(f"{name}: the box shows background, not its painted object")
            continue
        if masks is not None:
            mask = _eroded(np.asarray(masks)[index].astype(bool))
            if mask.sum() >= 4:
                mask_pixels = image[mask]
                if not _uniform(mask_pixels, colour, tolerance):
                    problems.append(f"{name}: its mask covers other pixels than its box (masks not moved with the image?)")
                    continue
        colours[index] = colour
        near = np.linalg.norm(image - colour, axis=2) <= tolerance
        for other_box, other_label in zip(boxes, labels):
            if other_label == label:  # its own box, and copies of the same painted object (Mosaic's)
                near[_window(other_box, height, width, grow=2)] = False
        if near.sum() > 2:
            problems.append(f"{name}: its colour shows outside the box ({int(near.sum())} px)")
    indices = sorted(colours)
    for a_pos, a in enumerate(indices):
        for b in indices[a_pos + 1 :]:
            if labels[a] != labels[b] and np.linalg.norm(colours[a] - colours[b]) <= 2 * tolerance:
                problems.append(f"objects {a} and {b}: their boxes show the same painted object")
    return problems


def _range_scale(before: np.ndarray, after: np.ndarray) -> float:
    """How much the transform stretched the pixel range (``normalize`` divides it by about 58)."""
    spread_before = np.percentile(before, 99) - np.percentile(before, 1)
    spread_after = np.percentile(after, 99) - np.percentile(after, 1)
    return float(spread_after / spread_before) if spread_before > 0 and spread_after > 0 else 1.0


def _window(box: np.ndarray, height: int, width: int, grow: int) -> tuple[slice, slice]:
    """The pixels of ``box`` grown (or, negative, shrunk) by ``grow`` pixels, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if grow >= 0:
        left, top, right, bottom = math.floor(x1) - grow, math.floor(y1) - grow, math.ceil(x2) + grow, math.ceil(y2) + grow
    else:
        left, top, right, bottom = math.ceil(x1) - grow, math.ceil(y1) - grow, math.floor(x2) + grow, math.floor(y2) + grow
    return slice(max(top, 0), max(min(bottom, height), 0)), slice(max(left, 0), max(min(right, width), 0))


def _eroded(mask: np.ndarray) -> np.ndarray:
    """``mask`` without its border pixels (interpolated edges are mixed colours)."""
    core = mask.copy()
    core[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    core[[0, -1]], core[:, [0, -1]] = False, False
    return core


def _uniform(pixels: np.ndarray, colour: np.ndarray, tolerance: float) -> bool:
    """95% of ``pixels`` within ``tolerance`` of ``colour``."""
    return float(np.mean(np.linalg.norm(pixels - colour, axis=-1) <= tolerance)) >= 0.95


def _shown(box) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"
