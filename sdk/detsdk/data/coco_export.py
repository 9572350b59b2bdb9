"""A dataset's annotations as one COCO dict (what ``sdk data convert`` writes)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from detsdk.errors import DataError


def dataset_to_coco(dataset: Any, images_root: str | None = None) -> dict:
    """A COCO dict of a dataset's annotations, in its order; image ids 1..N.

    Categories are the dataset's ``classes`` with its ``cat_ids`` (else 1..K);
    ignore regions (``iscrowd``) become ``iscrowd = 1``; ``masks``, when the
    dataset gives them, become RLE segmentations.
    """
    from detsdk.builtin.data.wrappers import annotations_of

    classes = [str(c) for c in dataset.classes]
    cat_ids = list(getattr(dataset, "cat_ids", None) or range(1, len(classes) + 1))
    images, annotations = [], []
    for index in range(len(dataset)):
        sample = annotations_of(dataset, index)
        meta = sample.get("meta", {})
        height, width = (int(v) for v in meta["ori_shape"])
        file = str(meta.get("file", ""))
        image_id = index + 1
        images.append({
            "id": image_id,
            "file_name": os.path.relpath(file, images_root) if images_root else file,
            "height": height,
            "width": width,
        })
        boxes = np.asarray(sample.get("boxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(sample.get("labels", np.zeros(0)), dtype=np.int64).reshape(-1)
        crowd = np.asarray(sample.get("iscrowd", np.zeros(len(boxes))), dtype=bool).reshape(-1)
        areas = sample.get("areas")
        rles = _rles(sample["masks"]) if sample.get("masks") is not None else None
        for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            annotation = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": cat_ids[int(labels[i])],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(areas[i]) if areas is not None else (x2 - x1) * (y2 - y1),
                "iscrowd": int(crowd[i]),
            }
            if rles is not None:
                annotation["segmentation"] = rles[i]
            annotations.append(annotation)
    if not images:
        raise DataError(f"{dataset!r}: the dataset is empty; nothing to convert")
    return {
        "info": {"description": f"converted by sdk data convert from {dataset!r}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cat_id, "name": name} for cat_id, name in zip(cat_ids, classes)],
    }


def _rles(masks: Any) -> list[dict]:
    """N×H×W masks as compressed RLEs with ``str`` counts (JSON-ready)."""
    from pycocotools import mask as mask_utils

    masks = np.asarray(masks)
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray((masks > 0).astype(np.uint8).transpose(1, 2, 0)))
    return [{"size": r["size"], "counts": r["counts"].decode("ascii")} for r in rles]
