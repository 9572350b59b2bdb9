"""The detection confusion matrix with a background row and column, as MMDetection's ``confusion_matrix.py`` counts it.

Rows are ground-truth classes, columns predicted classes; the last row and
column are background. For each image, detections scoring at least
``score_thr`` are compared with every ground-truth box: each pair with IoU
>= ``iou_thr`` adds one to ``[gt class, predicted class]`` (a detection may
count for several boxes); a detection overlapping none adds one to
``[background, predicted class]``; a ground-truth box that no detection of
its own class overlapped adds one to ``[its class, background]``. Crowd
regions are not ground truth here.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import torch
from torchvision.ops import box_iou

from detsdk.analysis.boxes import ImageBoxes


@attrs.frozen
class ImageErrors:
    """One image's false positives (background or wrong class) and false negatives at the matrix's thresholds."""

    image_id: Any
    false_positives: int
    false_negatives: int


@attrs.frozen
class ConfusionMatrix:
    """``counts[gt, predicted]``, (K+1)×(K+1) with background last; ``classes`` has K names."""

    classes: list[str]
    counts: np.ndarray
    iou_thr: float
    score_thr: float
    image_errors: list[ImageErrors]

    def normalised(self) -> np.ndarray:
        """Each row divided by its sum (what a ground-truth class became); empty rows stay 0."""
        totals = self.counts.sum(axis=1, keepdims=True)
        return np.divide(self.counts, totals, out=np.zeros_like(self.counts, dtype=np.float64), where=totals > 0)

    def to_json(self) -> dict:
        """Counts and labels, for ``confusion_matrix.json``."""
        return {"labels": [*self.classes, "background"], "rows": "ground truth", "columns": "predicted",
                "iou_thr": self.iou_thr, "score_thr": self.score_thr, "counts": self.counts.astype(int).tolist()}


@attrs.frozen
class ImageMatches:
    """How one image's detections (those scoring at least the threshold) meet its ground truth."""

    kept: np.ndarray  # D bools: the detection scores at least score_thr
    overlaps: np.ndarray  # kept D × G bools: IoU >= iou_thr
    correct: np.ndarray  # kept D bools: overlaps a box of its own class
    found: np.ndarray  # G bools: overlapped by a detection of its class


def match_image(image: ImageBoxes, iou_thr: float = 0.5, score_thr: float = 0.3) -> ImageMatches:
    """Compare one image's kept detections with its ground truth by IoU."""
    kept = image.scores >= score_thr
    boxes, labels = image.boxes[kept], image.labels[kept]
    if len(boxes) and len(image.gt_boxes):
        overlaps = box_iou(torch.from_numpy(boxes), torch.from_numpy(image.gt_boxes)).numpy() >= iou_thr
    else:
        overlaps = np.zeros((len(boxes), len(image.gt_boxes)), dtype=bool)
    same_class = overlaps & (labels[:, None] == image.gt_labels[None, :])
    return ImageMatches(kept, overlaps, same_class.any(axis=1), same_class.any(axis=0))


def confusion_matrix(images: list[ImageBoxes], classes: list[str], iou_thr: float = 0.5,
                     score_thr: float = 0.3) -> ConfusionMatrix:
    """Count the matrix over ``images`` (see the module docstring for the rules)."""
    size = len(classes) + 1
    counts = np.zeros((size, size), dtype=np.int64)
    errors = []
    for image in images:
        matches = match_image(image, iou_thr, score_thr)
        labels = image.labels[matches.kept]
        for d, g in zip(*np.nonzero(matches.overlaps)):
            counts[image.gt_labels[g], labels[d]] += 1
        np.add.at(counts, (size - 1, labels[~matches.overlaps.any(axis=1)]), 1)
        np.add.at(counts, (image.gt_labels[~matches.found], size - 1), 1)
        errors.append(ImageErrors(image.image_id, int((~matches.correct).sum()), int((~matches.found).sum())))
    return ConfusionMatrix(list(classes), counts, float(iou_thr), float(score_thr), errors)


def worst_images(errors: list[ImageErrors], count: int) -> list[ImageErrors]:
    """The ``count`` images with the most false positives plus false negatives (ties: first seen first)."""
    ranked = sorted(enumerate(errors), key=lambda item: (-(item[1].false_positives + item[1].false_negatives), item[0]))
    return [e for _, e in ranked[:count] if e.false_positives + e.false_negatives > 0]
