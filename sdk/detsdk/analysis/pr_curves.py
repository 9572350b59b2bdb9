"""Per-class precision-recall curves and AP, read from an accumulated ``COCOeval``.

COCOeval's ``eval["precision"]`` is [IoU threshold, recall threshold, class,
area range, max detections]: the interpolated precision at 101 recall
levels, -1 where a class has no ground truth. The curves here take all
areas and 100 detections per image.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

CURVE_IOUS = (0.5, 0.75)


@attrs.frozen
class PRCurves:
    """``precision[iou]`` is K×101 over ``recall``; ``ap`` is AP at IoU 0.50:0.95 per class (-1: no ground truth)."""

    classes: list[str]
    recall: np.ndarray
    precision: dict[float, np.ndarray]
    ap: np.ndarray
    ap_at: dict[float, np.ndarray]

    def to_json(self) -> dict:
        """Per class: AP, AP at each curve IoU, and the curves."""
        return {
            "recall": self.recall.tolist(),
            "classes": {
                name: {"AP": float(self.ap[k]), **{f"AP_{round(iou * 100)}": float(self.ap_at[iou][k]) for iou in CURVE_IOUS},
                       **{f"precision_{round(iou * 100)}": self.precision[iou][k].tolist() for iou in CURVE_IOUS}}
                for k, name in enumerate(self.classes)
            },
        }


def class_average_precision(precision: np.ndarray, index: int, iou_index: slice | int = slice(None)) -> float:
    """Mean interpolated precision of class ``index`` (all areas, last max-dets setting); -1.0 without ground truth."""
    values = np.asarray(precision[iou_index, :, index, 0, -1])
    values = values[values > -1]
    return float(np.mean(values)) if values.size else -1.0


def pr_curves(evaluation: Any, categories: list[tuple[Any, str]]) -> PRCurves:
    """The curves at IoU 0.5 and 0.75 and the per-class APs of ``categories`` (``(category id, name)``)."""
    precision = evaluation.eval["precision"]
    params = evaluation.params
    cat_index = {cat_id: k for k, cat_id in enumerate(params.catIds)}
    iou_index = {iou: int(np.argmin(np.abs(np.asarray(params.iouThrs) - iou))) for iou in CURVE_IOUS}
    curves = {iou: np.full((len(categories), len(params.recThrs)), -1.0) for iou in CURVE_IOUS}
    ap = np.full(len(categories), -1.0)
    ap_at = {iou: np.full(len(categories), -1.0) for iou in CURVE_IOUS}
    for k, (cat_id, _) in enumerate(categories):
        if cat_id not in cat_index:
            continue
        j = cat_index[cat_id]
        ap[k] = class_average_precision(precision, j)
        for iou, i in iou_index.items():
            curves[iou][k] = precision[i, :, j, 0, -1]
            ap_at[iou][k] = class_average_precision(precision, j, i)
    return PRCurves([name for _, name in categories], np.asarray(params.recThrs, dtype=np.float64), curves, ap, ap_at)
