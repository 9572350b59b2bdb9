"""faster-coco-eval gives pycocotools' twelve COCO figures, on real COCO files and a large synthetic set."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from detsdk.errors import DataError
from detsdk.evaluation.coco_backend import coco_from_dict, run_cocoeval, summarize
from test_coco_metric import GT_FILE, RESULT_FILES, needs_coco_files


def twelve_figures(gt: dict, results: list[dict], iou_type: str, backend: str) -> np.ndarray:
    coco_gt = coco_from_dict(json.loads(json.dumps(gt)), backend)
    image_ids = sorted(image["id"] for image in gt["images"])
    evaluation = run_cocoeval(coco_gt, json.loads(json.dumps(results)), iou_type, image_ids, backend)
    summarize(evaluation)
    return np.asarray(evaluation.stats[:12], dtype=np.float64)


@needs_coco_files
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_faster_coco_eval_equals_pycocotools_on_real_coco(iou_type):
    gt = json.loads(GT_FILE.read_text())
    results = json.loads(RESULT_FILES[iou_type].read_text())

    reference = twelve_figures(gt, results, iou_type, "pycocotools")
    faster = twelve_figures(gt, results, iou_type, "faster_coco_eval")

    assert reference.shape == (12,) and (reference > 0).all()
    assert np.abs(faster - reference).max() <= 1e-12


def synthetic_set(images: int, per_image: int, classes: int, seed: int = 0, masks: bool = False):
    """Ground truth and jittered, partly wrong detections with crowds and all three area ranges."""
    rng = np.random.default_rng(seed)
    size = 160
    gt_images, annotations, results = [], [], []
    for image_id in range(1, images + 1):
        gt_images.append({"id": image_id, "height": size, "width": size})
        for _ in range(int(rng.integers(0, per_image + 1))):
            w, h = rng.uniform(4, 120, 2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            annotation = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(rng.integers(1, classes + 1)),
                          "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.05)}
            if masks:
                annotation["segmentation"] = [[x, y, x + w, y, x + w * 0.6, y + h, x, y + h * 0.8]]
                annotation["area"] = float(mask_utils.area(mask_utils.frPyObjects(annotation["segmentation"], size, size))[0])
            annotations.append(annotation)
            for _ in range(int(rng.integers(0, 3))):  # duplicates, shifted boxes, wrong classes
                dx, dy = rng.normal(0, 0.15 * w), rng.normal(0, 0.15 * h)
                box = [float(np.clip(x + dx, 0, size - 1)), float(np.clip(y + dy, 0, size - 1)), w * rng.uniform(0.7, 1.3), h]
                category = annotation["category_id"] if rng.random() < 0.8 else int(rng.integers(1, classes + 1))
                result = {"image_id": image_id, "category_id": category, "bbox": box, "score": float(rng.random())}
                if masks:
                    bx, by, bw, bh = box
                    polygon = [[bx, by, bx + bw, by, bx + bw, by + bh, bx, by + bh]]
                    rle = mask_utils.merge(mask_utils.frPyObjects(polygon, size, size))
                    result = {**{k: v for k, v in result.items() if k != "bbox"},
                              "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}}
                results.append(result)
        for _ in range(int(rng.integers(0, 3))):  # background false positives
            w, h = rng.uniform(4, 80, 2)
            box = [float(rng.uniform(0, size - w)), float(rng.uniform(0, size - h)), float(w), float(h)]
            if not masks:
                results.append({"image_id": image_id, "category_id": int(rng.integers(1, classes + 1)),
                                "bbox": box, "score": float(rng.random())})
    gt = {"images": gt_images, "annotations": annotations,
          "categories": [{"id": c, "name": f"c{c}"} for c in range(1, classes + 1)]}
    return gt, results


def test_faster_coco_eval_equals_pycocotools_on_a_large_synthetic_box_set():
    gt, results = synthetic_set(images=400, per_image=8, classes=12)
    assert len(results) > 2000

    reference = twelve_figures(gt, results, "bbox", "pycocotools")
    faster = twelve_figures(gt, results, "bbox", "faster_coco_eval")

    assert (reference[:6] > 0).all()
    assert np.abs(faster - reference).max() <= 1e-12


def test_faster_coco_eval_equals_pycocotools_on_a_synthetic_mask_set():
    gt, results = synthetic_set(images=60, per_image=6, classes=5, seed=1, masks=True)

    reference = twelve_figures(gt, results, "segm", "pycocotools")
    faster = twelve_figures(gt, results, "segm", "faster_coco_eval")

    assert (reference[:3] > 0).all()
    assert np.abs(faster - reference).max() <= 1e-12


def test_empty_results_score_zero_on_both_backends():
    gt, _ = synthetic_set(images=5, per_image=3, classes=2)
    for backend in ("pycocotools", "faster_coco_eval"):
        assert twelve_figures(gt, [], "bbox", backend)[0] == 0.0


def test_faster_coco_eval_names_string_image_ids():
    gt = {"images": [{"id": "a", "height": 10, "width": 10}], "annotations": [], "categories": []}
    with pytest.raises(DataError, match="pycocotools"):
        coco_from_dict(gt, "faster_coco_eval")
