"""The COCO error breakdown of pycocotools' ``analyze()`` and Detectron's analysis.

Seven precision-recall curves per class, each forgiving one more kind of
error than the one before (all areas, 100 detections per image):

- ``C75``, ``C50``: PR at IoU 0.75 and 0.5;
- ``Loc``: at IoU 0.1 (localisation errors forgiven, duplicates still not);
- ``Sim``: also forgiving confusion with a class of the same supercategory
  (their ground truth becomes an ignore region of this class, at IoU 0.1);
- ``Oth``: also forgiving confusion with any other class;
- ``BG``: also forgiving background false positives (precision 1 wherever
  ``Oth`` reaches);
- ``FN``: precision 1 everywhere: what is left are the objects never detected.

The area under each curve is an AP; the gap between two is what that error
costs. ``overall`` averages the classes that have ground truth. Ground
truth without a ``supercategory`` has no similar classes (``Sim`` = ``Loc``).
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from detsdk.evaluation.coco_backend import coco_from_dict, run_cocoeval

ERROR_TYPES = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")


@attrs.frozen
class ErrorBreakdown:
    """``curves[t, :, k]``: error type ``t``'s PR curve of class ``k`` over ``recall``; ``ap = curves.mean(axis=1)``."""

    classes: list[str]
    recall: np.ndarray
    curves: np.ndarray  # 7×R×K
    has_ground_truth: np.ndarray  # K bools

    @property
    def ap(self) -> np.ndarray:
        """7×K: the area under each curve."""
        return self.curves.mean(axis=1)

    @property
    def overall(self) -> np.ndarray:
        """7 values: ``ap`` averaged over the classes with ground truth (0 when none has)."""
        if not self.has_ground_truth.any():
            return np.zeros(len(ERROR_TYPES))
        return self.ap[:, self.has_ground_truth].mean(axis=1)

    def to_json(self) -> dict:
        """Overall and per-class AP of each error type (``null`` for a class without ground truth)."""
        ap = self.ap
        return {
            "error_types": list(ERROR_TYPES),
            "overall": dict(zip(ERROR_TYPES, map(float, self.overall))),
            "classes": {
                name: dict(zip(ERROR_TYPES, map(float, ap[:, k]))) if self.has_ground_truth[k] else None
                for k, name in enumerate(self.classes)
            },
        }


def error_breakdown(ground_truth: dict, results: list[dict], iou_type: str, image_ids: list, backend: str,
                    categories: list[tuple[Any, str]]) -> ErrorBreakdown:
    """Compute the seven curves of every class in ``categories`` (``(category id, name)``)."""
    cat_ids = [cat_id for cat_id, _ in categories]

    def three_ious(params):
        params.iouThrs = np.array([0.75, 0.5, 0.1])
        params.maxDets = [100]
        params.catIds = cat_ids

    evaluation = run_cocoeval(coco_from_dict(ground_truth, backend), results, iou_type, image_ids, backend, three_ious)
    precision = np.asarray(evaluation.eval["precision"])[:, :, :, 0, 0]  # 3×R×K, all areas
    recall = np.asarray(evaluation.params.recThrs, dtype=np.float64)
    curves = np.zeros((len(ERROR_TYPES), len(recall), len(cat_ids)))
    curves[:3] = precision
    has_ground_truth = (precision > -1).any(axis=(0, 1))
    supercategory = {c["id"]: c.get("supercategory") for c in ground_truth.get("categories", [])}
    for k, cat_id in enumerate(cat_ids):
        if not has_ground_truth[k]:
            continue
        own = [r for r in results if r["category_id"] == cat_id]
        # Only images with this class's ground truth or detections can change its curve.
        involved = {a["image_id"] for a in ground_truth["annotations"] if a["category_id"] == cat_id}
        involved |= {r["image_id"] for r in own}
        involved_ids = [i for i in image_ids if i in involved]
        group = supercategory.get(cat_id)
        similar = {c for c in cat_ids if c != cat_id and group is not None and supercategory.get(c) == group}
        curves[3, :, k] = _forgiving(ground_truth, own, iou_type, involved_ids, backend, cat_id, similar)
        curves[4, :, k] = _forgiving(ground_truth, own, iou_type, involved_ids, backend, cat_id, set(cat_ids) - {cat_id})
    curves[curves < 0] = 0.0  # -1 (no ground truth at all) counts as no precision, as in pycocotools' analyze
    curves[5] = curves[4] > 0
    curves[6] = 1.0
    curves[5:, :, ~has_ground_truth] = 0.0
    return ErrorBreakdown([name for _, name in categories], recall, curves, has_ground_truth)


def _forgiving(ground_truth: dict, results: list[dict], iou_type: str, image_ids: list, backend: str,
               cat_id: Any, forgiven: set) -> np.ndarray:
    """PR at IoU 0.1 of class ``cat_id`` when the ground truth of the ``forgiven`` classes is its ignore region."""
    annotations = []
    images = set(image_ids)
    for annotation in ground_truth["annotations"]:
        if annotation["image_id"] not in images:
            continue  # an image that cannot change this class's curve: no need to index its boxes
        if annotation["category_id"] == cat_id:
            annotations.append(dict(annotation))
        elif annotation["category_id"] in forgiven:
            annotations.append({**annotation, "category_id": cat_id, "iscrowd": 1})
    gt = {**ground_truth, "annotations": annotations}

    def at_iou_01(params):
        params.iouThrs = np.array([0.1])
        params.maxDets = [100]
        params.catIds = [cat_id]

    evaluation = run_cocoeval(coco_from_dict(gt, backend), results, iou_type, image_ids, backend, at_iou_01)
    return np.asarray(evaluation.eval["precision"])[0, :, 0, 0, 0]
