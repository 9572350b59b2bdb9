"""CocoMetric: pycocotools' numbers on official COCO files, and any dataset through samples."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detsdk.builtin.evaluation import CocoMetric
from detsdk.errors import DataError, RecipeError

DATA = Path(__file__).resolve().parents[1] / "shared" / "data" / "coco-val2014-100"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/coco-val2014-100")
GT_FILE = DATA / "instances_val2014_100.json"
RESULT_FILES = {
    "bbox": DATA / "instances_val2014_fakebbox100_results.json",
    "segm": DATA / "instances_val2014_fakesegm100_results.json",
}
SIX = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")
needs_coco_files = pytest.mark.skipif(not GT_FILE.is_file(), reason="coco-val2014-100 test data not present")


class CocoStandIn:
    """What a COCO dataset exposes to the metric: official ground truth and label -> category id."""

    def __init__(self, coco_gt: dict):
        self.coco_gt = coco_gt
        self.cat_ids = sorted(c["id"] for c in coco_gt["categories"])
        names = {c["id"]: c["name"] for c in coco_gt["categories"]}
        self.classes = [names[i] for i in self.cat_ids]


def pycocotools_by_hand(iou_type: str) -> np.ndarray:
    """COCOeval exactly as its README runs it, on the files."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(GT_FILE))
        coco_dt = coco_gt.loadRes(str(RESULT_FILES[iou_type]))
        evaluation = COCOeval(coco_gt, coco_dt, iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


@needs_coco_files
@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_official_ground_truth_and_raw_results_equal_pycocotools(iou_type, backend):
    coco_gt = json.loads(GT_FILE.read_text())
    pristine = json.loads(GT_FILE.read_text())
    metric = CocoMetric(iou_types=[iou_type], backend=backend)
    metric.bind_dataset(CocoStandIn(coco_gt))
    metric.add_coco_results(json.loads(RESULT_FILES[iou_type].read_text()))

    metrics = metric.compute()

    expected = pycocotools_by_hand(iou_type)
    tolerance = 0.0 if backend == "pycocotools" else 1e-12  # the same figures; C++ may round the last bit
    assert np.allclose([metrics[f"{iou_type}_{name}"] for name in SIX], expected[:6], rtol=0, atol=tolerance)
    assert np.allclose(metric.evaluations[iou_type].stats[:12], expected[:12], rtol=0, atol=tolerance)
    assert all(type(metrics[f"{iou_type}_{name}"]) is float for name in SIX)
    assert f"Evaluate annotation type *{iou_type}*" in metric.summary
    assert coco_gt == pristine  # the dataset's annotations are not written into


@needs_coco_files
def test_processed_detections_map_labels_to_category_ids():
    coco_gt = json.loads(GT_FILE.read_text())
    dataset = CocoStandIn(coco_gt)
    results = json.loads(RESULT_FILES["bbox"].read_text())
    label_of = {cat_id: label for label, cat_id in enumerate(dataset.cat_ids)}
    metric = CocoMetric(classwise=True)
    metric.bind_dataset(dataset)
    for image in coco_gt["images"]:
        mine = [r for r in results if r["image_id"] == image["id"]]
        boxes = np.array([r["bbox"] for r in mine], dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        sample = {"meta": {"image_id": image["id"], "ori_shape": (image["height"], image["width"])}}
        detection = {
            "boxes": boxes,
            "scores": np.array([r["score"] for r in mine]),
            "labels": np.array([label_of[r["category_id"]] for r in mine], dtype=np.int64),
        }
        metric.process([sample], [detection])

    metrics = metric.compute()

    assert metrics["bbox_mAP"] == pytest.approx(float(pycocotools_by_hand("bbox")[0]), abs=1e-9)
    assert "bbox_mAP_person" in metrics


def box_sample(image_id, boxes, labels, iscrowd=None, size=(100, 100)):
    sample = {
        "boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.array(labels, dtype=np.int64),
        "meta": {"image_id": image_id, "ori_shape": size},
    }
    if iscrowd is not None:
        sample["iscrowd"] = np.array(iscrowd, dtype=bool)
    return sample


def detections(boxes, labels, scores=None, masks=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    out = {
        "boxes": boxes,
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores if scores is not None else [0.9] * len(boxes)),
    }
    if masks is not None:
        out["masks"] = masks
    return out


BOXES = [[10, 10, 50, 60], [55, 20, 95, 90]]


# pycocotools' precision is tp / (tp + fp + eps), so a perfect score is 1 - 2e-16, not 1.0.
def test_perfect_box_detections_score_one():
    metric = CocoMetric()
    metric.process([box_sample("a.jpg", BOXES, [0, 1])], [detections(BOXES, [0, 1])])
    assert metric.compute()["bbox_mAP"] == pytest.approx(1.0)


def test_shifted_detection_scores_lower():
    metric = CocoMetric()
    shifted = [[20, 20, 60, 70], BOXES[1]]
    metric.process([box_sample(1, BOXES, [0, 1])], [detections(shifted, [0, 1])])
    assert metric.compute()["bbox_mAP"] < 1.0


def test_crowd_ground_truth_is_ignored():
    sample = box_sample(1, BOXES + [[0, 0, 100, 100]], [0, 1, 0], iscrowd=[False, False, True])
    missed_crowd = CocoMetric()
    missed_crowd.process([sample], [detections(BOXES, [0, 1])])
    hit_crowd = CocoMetric()
    hit_crowd.process([sample], [detections(BOXES + [[0, 0, 100, 100]], [0, 1, 0], [0.8, 0.8, 0.99])])
    # neither a miss nor a hit on a crowd region counts
    assert missed_crowd.compute()["bbox_mAP"] == pytest.approx(1.0)
    assert hit_crowd.compute()["bbox_mAP"] == pytest.approx(1.0)


def test_classwise_names_classes_of_a_bound_dataset():
    class Shapes:
        classes = ["square", "circle"]

    metric = CocoMetric(classwise=True)
    metric.bind_dataset(Shapes())
    metric.process([box_sample(1, BOXES, [0, 1])], [detections([BOXES[0]], [0])])
    metrics = metric.compute()
    assert metrics["bbox_mAP_square"] == pytest.approx(1.0)
    assert metrics["bbox_mAP_circle"] == 0.0


def test_repeated_image_counts_once():
    metric = CocoMetric()
    metric.process([box_sample(1, BOXES, [0, 1])], [detections(BOXES, [0, 1])])
    metric.process([box_sample(1, BOXES, [0, 1])], [detections([], [])])
    assert metric.compute()["bbox_mAP"] == pytest.approx(1.0)


def masks_for(boxes, size=(100, 100)):
    masks = np.zeros((len(boxes), *size), dtype=np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes):
        mask[y1:y2, x1 + 5 : x2] = 1  # not the box itself, so segm differs from bbox
    return masks


def test_perfect_masks_score_one():
    sample = box_sample(1, BOXES, [0, 1])
    sample["masks"] = masks_for(BOXES)
    metric = CocoMetric(iou_types=["bbox", "segm"])
    metric.process([sample], [detections(BOXES, [0, 1], masks=torch.from_numpy(masks_for(BOXES)))])
    metrics = metric.compute()
    assert metrics["segm_mAP"] == pytest.approx(1.0)
    assert metrics["bbox_mAP"] == pytest.approx(1.0)


def test_segm_without_detection_masks_is_a_data_error():
    metric = CocoMetric(iou_types=["segm"])
    with pytest.raises(DataError, match="masks"):
        metric.process([box_sample(1, BOXES, [0, 1])], [detections(BOXES, [0, 1])])


def test_segm_without_ground_truth_masks_is_a_data_error():
    metric = CocoMetric(iou_types=["segm"])
    metric.process([box_sample(1, BOXES, [0, 1])], [detections(BOXES, [0, 1], masks=masks_for(BOXES))])
    with pytest.raises(DataError, match="masks"):
        metric.compute()


def test_no_detections_gives_zeros():
    sizes = [[0, 0, 20, 20], [0, 0, 60, 60], [0, 0, 99, 99]]  # small, medium, large
    metric = CocoMetric()
    metric.process([box_sample(1, sizes, [0, 0, 0])], [detections([], [])])
    metrics = metric.compute()
    assert metrics == {f"bbox_{name}": 0.0 for name in SIX}


def test_nothing_at_all_does_not_crash():
    metrics = CocoMetric(iou_types=["bbox", "segm"]).compute()
    assert set(metrics) == {f"{t}_{name}" for t in ("bbox", "segm") for name in SIX}


def test_reset_forgets_processed_batches():
    metric = CocoMetric()
    metric.process([box_sample(1, BOXES, [0, 1])], [detections([[0, 0, 5, 5]], [0])])
    metric.reset()
    metric.process([box_sample(1, BOXES, [0, 1])], [detections(BOXES, [0, 1])])
    assert metric.compute()["bbox_mAP"] == pytest.approx(1.0)


def test_raw_results_need_coco_ground_truth():
    metric = CocoMetric()
    metric.add_coco_results([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(DataError, match="coco_gt"):
        metric.compute()


def test_unknown_iou_type_is_a_recipe_error_with_suggestion():
    with pytest.raises(RecipeError, match="did you mean 'segm'"):
        CocoMetric(iou_types=["seg"])


def test_unknown_backend_is_a_recipe_error_with_suggestion():
    with pytest.raises(RecipeError, match="did you mean 'pycocotools'"):
        CocoMetric(backend="pycocotool")
