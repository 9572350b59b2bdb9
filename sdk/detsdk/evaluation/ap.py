"""Average precision of ranked detections, per class, at one IoU threshold: the VOC-style computation.

Shared by the metrics that report VOC-style AP (the ``voc`` and ``widerface``
plugins), so that there is one implementation of the matching and of both
AP definitions:

- ``"area"``: the area under the interpolated precision-recall curve
  (VOC2010 and later; what MMDetection reports for VOC, also for VOC2007);
- ``"11points"``: the mean interpolated precision at recall 0, 0.1, ..., 1
  (the VOC2007 devkit).

Matching follows the VOC devkit and MMDetection's ``tpfp_default``: within
a class, detections are taken by decreasing score; each looks at the
ground-truth box it overlaps most, ignore regions included. At IoU >=
``iou_thr`` it is a true positive if that box is not yet taken, a false
positive if it is, and it does not count at all if that box is an ignore
region (VOC ``difficult``, COCO ``iscrowd``). Below the threshold it is a
false positive. Ignore regions are not counted as ground truth.

    >>> image = ImageDetections.from_sample(sample, detection)             # doctest: +SKIP
    >>> [c.ap["area"] for c in evaluate_detections([image], num_classes=20, iou_thr=0.5)]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch
from torchvision.ops import box_iou

AP_MODES = ("area", "11points")
TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1


def _array(value: Any, dtype, shape: tuple[int, ...]) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value if value is not None else np.zeros(shape), dtype=dtype).reshape(shape)


@attrs.frozen
class ImageDetections:
    """One image's ground truth and detections, boxes as x1 y1 x2 y2 in the same pixels."""

    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    gt_ignore: np.ndarray
    det_boxes: np.ndarray
    det_scores: np.ndarray
    det_labels: np.ndarray

    @classmethod
    def from_sample(cls, sample: dict, detection: dict) -> ImageDetections:
        """From an annotation sample (``boxes``, ``labels``, ``iscrowd`` as ignore) and a detection dict."""
        gt_boxes = _array(sample.get("boxes"), np.float64, (-1, 4))
        count = len(gt_boxes)
        return cls(
            gt_boxes=gt_boxes,
            gt_labels=_array(sample.get("labels", np.zeros(count)), np.int64, (count,)),
            gt_ignore=_array(sample.get("iscrowd", np.zeros(count)), bool, (count,)),
            det_boxes=_array(detection["boxes"], np.float64, (-1, 4)),
            det_scores=_array(detection["scores"], np.float64, (-1,)),
            det_labels=_array(detection["labels"], np.int64, (-1,)),
        )


@attrs.frozen
class ClassAP:
    """AP of one class at one IoU threshold.

    ``ap`` maps each mode (``"area"``, ``"11points"``) to its value; ``ap``
    and ``recall`` are NaN for a class without ground truth (it cannot be
    measured; means leave it out, as MMDetection does).
    """

    num_gts: int
    num_dets: int
    recall: float
    ap: dict[str, float]


def match_detections(
    det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray, gt_ignore: np.ndarray, iou_thr: float
) -> np.ndarray:
    """The outcome of each detection of one class in one image: ``1`` true positive, ``0`` false, ``-1`` ignored.

    Outcomes are returned in the detections' input order.
    """
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    outcome = np.full(len(det_boxes), FALSE_POSITIVE, dtype=np.int8)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return outcome
    ious = box_iou(torch.from_numpy(det_boxes), torch.from_numpy(gt_boxes)).numpy()
    best, best_iou = ious.argmax(axis=1), ious.max(axis=1)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for d in np.argsort(-np.asarray(det_scores, dtype=np.float64), kind="stable"):
        if best_iou[d] < iou_thr:
            continue
        g = best[d]
        if gt_ignore[g]:
            outcome[d] = IGNORED
        elif not taken[g]:
            outcome[d] = TRUE_POSITIVE
            taken[g] = True
    return outcome


def average_precision(recall: np.ndarray, precision: np.ndarray, mode: str = "area") -> float:
    """AP from a precision-recall curve (detections by decreasing score): ``"area"`` or ``"11points"``."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if mode == "11points":
        points = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in np.linspace(0, 1, 11)]
        return float(np.mean(points))
    if mode != "area":
        raise ValueError(f"unknown AP mode {mode!r}; expected one of {AP_MODES}")
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope: the best precision at any higher recall
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def class_average_precision(
    images: Sequence[ImageDetections], label: int, iou_thr: float = 0.5, modes: Sequence[str] = AP_MODES
) -> ClassAP:
    """AP of class ``label`` over ``images``: match in each image, rank all detections together."""
    scores, outcomes = [], []
    num_gts = 0
    for image in images:
        gt = image.gt_labels == label
        det = image.det_labels == label
        num_gts += int((gt & ~image.gt_ignore).sum())
        scores.append(image.det_scores[det])
        outcomes.append(
            match_detections(image.det_boxes[det], image.det_scores[det], image.gt_boxes[gt], image.gt_ignore[gt], iou_thr)
        )
    scores_all = np.concatenate(scores) if scores else np.zeros(0)
    outcome_all = np.concatenate(outcomes) if outcomes else np.zeros(0, np.int8)
    counted = outcome_all != IGNORED
    order = np.argsort(-scores_all[counted], kind="stable")
    ranked = outcome_all[counted][order]
    if num_gts == 0:
        return ClassAP(num_gts=0, num_dets=len(ranked), recall=math.nan, ap={m: math.nan for m in modes})
    tp = np.cumsum(ranked == TRUE_POSITIVE)
    fp = np.cumsum(ranked == FALSE_POSITIVE)
    recall = tp / num_gts
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return ClassAP(
        num_gts=num_gts,
        num_dets=len(ranked),
        recall=float(recall[-1]) if len(recall) else 0.0,
        ap={m: average_precision(recall, precision, m) for m in modes},
    )


def evaluate_detections(
    images: Sequence[ImageDetections], num_classes: int, iou_thr: float = 0.5, modes: Sequence[str] = AP_MODES
) -> list[ClassAP]:
    """``class_average_precision`` of every class ``0 .. num_classes - 1``."""
    return [class_average_precision(images, label, iou_thr, modes) for label in range(num_classes)]


def mean_over_classes(values: Sequence[float]) -> float:
    """The mean of the measurable (not NaN) values; 0.0 when none is (MMDetection's convention)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else 0.0
