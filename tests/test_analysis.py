"""detsdk.analysis: a known confusion matrix, a known PR curve, a known error breakdown, and the report's files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detsdk.analysis.boxes import per_image_boxes
from detsdk.analysis.confusion import confusion_matrix, worst_images
from detsdk.analysis.error_breakdown import ERROR_TYPES, error_breakdown
from detsdk.analysis.pr_curves import pr_curves
from detsdk.analysis.report import analyze_evaluation
from detsdk.builtin.evaluation import CocoMetric


def coco(annotations, categories, images=(1, 2)):
    return {"images": [{"id": i, "height": 200, "width": 200, "file_name": f"{i}.png"} for i in images],
            "annotations": [{"id": n, "iscrowd": 0, "area": a["bbox"][2] * a["bbox"][3], **a}
                            for n, a in enumerate(annotations, start=1)],
            "categories": categories}


class StandIn:
    """What a COCO dataset gives the metric."""

    def __init__(self, gt, images=""):
        self.coco_gt, self.images = gt, images
        self.cat_ids = [c["id"] for c in gt["categories"]]
        self.classes = [c["name"] for c in gt["categories"]]


def evaluated(gt, results, backend="faster_coco_eval", images=""):
    metric = CocoMetric(backend=backend)
    metric.bind_dataset(StandIn(gt, images))
    metric.add_coco_results(results)
    metric.compute()
    return metric


AB = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


def test_confusion_matrix_counts_matches_confusions_background_and_misses():
    gt = coco([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
               {"image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10]},
               {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},
               {"image_id": 2, "category_id": 2, "bbox": [50, 50, 10, 10], "iscrowd": 1}], AB)
    results = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},    # a found
               {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "score": 0.8},  # b taken for a
               {"image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10], "score": 0.7},  # background
               {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.1}]    # below the score threshold
    images = per_image_boxes(gt, results, [(1, "a"), (2, "b")], [1, 2])

    matrix = confusion_matrix(images, ["a", "b"], iou_thr=0.5, score_thr=0.3)

    # rows: ground truth a, b, background; columns: predicted a, b, background
    assert matrix.counts.tolist() == [[1, 0, 1], [1, 0, 1], [0, 1, 0]]
    assert matrix.normalised()[0].tolist() == [0.5, 0.0, 0.5] and matrix.normalised()[2].tolist() == [0, 1, 0]
    assert [(e.image_id, e.false_positives, e.false_negatives) for e in matrix.image_errors] == [(1, 2, 1), (2, 0, 1)]
    assert [e.image_id for e in worst_images(matrix.image_errors, 1)] == [1]
    assert matrix.to_json()["labels"] == ["a", "b", "background"]


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_pr_curve_of_a_hit_a_miss_and_a_hit(backend):
    gt = coco([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20]},
               {"image_id": 1, "category_id": 1, "bbox": [100, 100, 20, 20]}], AB[:1], images=(1,))
    results = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.9},
               {"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.8},
               {"image_id": 1, "category_id": 1, "bbox": [100, 100, 20, 20], "score": 0.7}]
    metric = evaluated(gt, results, backend)

    curves = pr_curves(metric.evaluations["bbox"], metric.categories)

    # tp/fp 1/0, 1/1, 2/1: precision 1 up to recall 0.5, then the envelope's 2/3 up to recall 1.
    recall, precision = curves.recall, curves.precision[0.5][0]
    assert np.allclose(precision[recall <= 0.5], 1.0) and np.allclose(precision[recall > 0.5], 2 / 3)
    assert curves.ap_at[0.5][0] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)
    assert curves.ap[0] == pytest.approx(curves.ap_at[0.5][0], abs=1e-12)  # exact boxes: the same at every IoU


ANIMALS = [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 2, "name": "dog", "supercategory": "animal"},
           {"id": 3, "name": "car", "supercategory": "vehicle"}]


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_error_breakdown_forgives_one_kind_of_error_at_a_time(backend):
    gt = coco([{"image_id": 1, "category_id": 1, "bbox": [100, 100, 40, 40]},   # the cat
               {"image_id": 1, "category_id": 2, "bbox": [0, 0, 40, 40]},       # a dog
               {"image_id": 1, "category_id": 3, "bbox": [0, 100, 40, 40]}],    # a car
              ANIMALS, images=(1,))
    cat = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 40], "score": 0.9},      # the dog, taken for a cat
           {"image_id": 1, "category_id": 1, "bbox": [0, 100, 40, 40], "score": 0.8},    # the car, taken for a cat
           {"image_id": 1, "category_id": 1, "bbox": [150, 0, 40, 40], "score": 0.7},    # nothing there
           {"image_id": 1, "category_id": 1, "bbox": [108, 100, 40, 40], "score": 0.6}]  # the cat at IoU 2/3

    breakdown = error_breakdown(gt, cat, "bbox", [1], backend, [(1, "cat"), (2, "dog"), (3, "car")])

    expected_cat = {"C75": 0.0, "C50": 1 / 4, "Loc": 1 / 4, "Sim": 1 / 3, "Oth": 1 / 2, "BG": 1.0, "FN": 1.0}
    assert breakdown.to_json()["classes"]["cat"] == pytest.approx(expected_cat, abs=1e-12)
    never_detected = dict.fromkeys(ERROR_TYPES, 0.0) | {"FN": 1.0}
    assert breakdown.to_json()["classes"]["dog"] == never_detected
    overall = breakdown.to_json()["overall"]
    assert overall["C50"] == pytest.approx(1 / 12) and overall["Oth"] == pytest.approx(1 / 6)
    assert overall["BG"] == pytest.approx(1 / 3) and overall["FN"] == 1.0


def test_report_writes_every_plot_and_draws_the_worst_images(tmp_path):
    import cv2

    gt = coco([{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50]},
               {"image_id": 2, "category_id": 2, "bbox": [30, 30, 60, 40]}], AB)
    for image_id in (1, 2):
        cv2.imwrite(str(tmp_path / f"{image_id}.png"), np.full((200, 200, 3), 90, np.uint8))
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9},
               {"image_id": 2, "category_id": 1, "bbox": [30, 30, 60, 40], "score": 0.8}]
    metric = evaluated(gt, results, images=str(tmp_path))

    report = analyze_evaluation(metric, tmp_path / "out")

    names = {p.name for p in report.files}
    assert {"confusion_matrix.png", "confusion_matrix.json", "bbox_pr_curves.png", "bbox_class_ap.png",
            "bbox_pr_curves.json", "bbox_error_breakdown.png", "bbox_error_breakdown.json",
            "worst_images.json", "01_image_2.png"} <= names, names
    assert report.notes == []
    assert json.loads((tmp_path / "out" / "confusion_matrix.json").read_text())["counts"] == [[1, 0, 0], [1, 0, 1], [0, 0, 0]]
    drawn = cv2.imread(str(tmp_path / "out" / "worst_images" / "01_image_2.png"))
    assert drawn.shape[:2] == (200, 200) and (drawn != 90).any()  # boxes drawn on the image


def test_report_on_a_metric_without_coco_evaluation_says_so(tmp_path):
    report = analyze_evaluation(object(), tmp_path)
    assert report.files == [] and "keeps no COCO evaluation" in report.notes[0]
