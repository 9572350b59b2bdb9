"""COCO records (ground truth, results) as per-image box arrays, x1 y1 x2 y2."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import attrs
import numpy as np


@attrs.frozen
class ImageBoxes:
    """One image's non-crowd ground truth and its detections, labels 0-based in ``categories`` order."""

    image_id: Any
    gt_boxes: np.ndarray  # G×4
    gt_labels: np.ndarray  # G
    boxes: np.ndarray  # D×4
    labels: np.ndarray  # D
    scores: np.ndarray  # D


def per_image_boxes(ground_truth: dict, results: list[dict], categories: list[tuple[Any, str]],
                    image_ids: list) -> list[ImageBoxes]:
    """Group COCO annotations and results by image, in ``image_ids`` order; crowd regions are left out.

    A result without a ``bbox`` takes its mask's bounding box (as ``loadRes`` does).
    """
    label_of = {cat_id: k for k, (cat_id, _) in enumerate(categories)}
    gts: dict[Any, list] = defaultdict(list)
    for annotation in ground_truth["annotations"]:
        if not annotation.get("iscrowd", 0) and annotation["category_id"] in label_of:
            gts[annotation["image_id"]].append((_xyxy(annotation["bbox"]), label_of[annotation["category_id"]]))
    dets: dict[Any, list] = defaultdict(list)
    for result in results:
        if result["category_id"] in label_of:
            dets[result["image_id"]].append((_xyxy(_result_box(result)), label_of[result["category_id"]],
                                             float(result["score"])))
    images = []
    for image_id in image_ids:
        gt, det = gts.get(image_id, []), dets.get(image_id, [])
        images.append(ImageBoxes(
            image_id=image_id,
            gt_boxes=np.array([g[0] for g in gt], np.float64).reshape(-1, 4),
            gt_labels=np.array([g[1] for g in gt], np.int64),
            boxes=np.array([d[0] for d in det], np.float64).reshape(-1, 4),
            labels=np.array([d[1] for d in det], np.int64),
            scores=np.array([d[2] for d in det], np.float64),
        ))
    return images


def _result_box(result: dict) -> list[float]:
    if "bbox" in result:
        return result["bbox"]
    from pycocotools import mask as mask_utils

    segmentation = dict(result["segmentation"])
    if isinstance(segmentation.get("counts"), str):
        segmentation["counts"] = segmentation["counts"].encode("ascii")
    return [float(v) for v in mask_utils.toBbox(segmentation)]


def _xyxy(box: list[float]) -> list[float]:
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]
