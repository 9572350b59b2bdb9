"""The ``cityscapes`` metric agrees with cityscapesscripts' evaluator run by hand."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest
from test_cityscapes_data import make_cityscapes_tree

from detsdk.errors import DataError


@pytest.fixture
def val_set(tmp_path):
    from det_plugin_cityscapes.dataset import CityscapesDataset

    root = tmp_path / "cityscapes"
    make_cityscapes_tree(root)
    return CityscapesDataset(str(root), split="val")


def _perfect(sample: dict) -> dict:
    keep = ~sample["iscrowd"]
    return {
        "boxes": sample["boxes"][keep].astype(np.float64),
        "scores": np.ones(int(keep.sum()), np.float32),
        "labels": sample["labels"][keep],
        "masks": sample["masks"][keep],
    }


def _perturbed(sample: dict, rng) -> dict:
    """Shifted masks with random scores, some missed instances, a false positive and a detection on a crowd region."""
    masks, labels, scores = [], [], []
    for mask, label, crowd in zip(sample["masks"], sample["labels"], sample["iscrowd"]):
        if rng.random() < 0.2 and not crowd:
            continue
        masks.append(np.roll(mask, int(rng.integers(-4, 5)), axis=1))
        labels.append(int(rng.integers(8)) if rng.random() < 0.15 else int(label))
        scores.append(float(rng.random()))
    false_positive = np.zeros(sample["masks"].shape[1:], np.uint8)
    false_positive[2:14, 40:60] = 1
    masks.append(false_positive)
    labels.append(2)
    scores.append(float(rng.random()))
    masks = np.stack(masks).astype(np.uint8)
    boxes = []
    for mask in masks:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    boxes = np.array(boxes, np.float64)
    return {"boxes": boxes, "scores": np.array(scores, np.float32), "labels": np.array(labels), "masks": masks}


def _evaluate(metric, dataset, detect):
    samples = [dataset.get_annotations(i) for i in range(len(dataset))]
    metric.bind_dataset(dataset)
    metric.process(samples, [detect(s) for s in samples])
    return metric.compute(), samples


def test_perfect_predictions_score_ap_1_with_the_official_metric_first(val_set):
    from det_plugin_cityscapes.metric import CityscapesMetric

    metrics, _ = _evaluate(CityscapesMetric(classwise=True), val_set, _perfect)
    assert list(metrics)[:2] == ["cityscapes_AP", "cityscapes_AP50"]
    assert metrics["cityscapes_AP"] == 1.0 and metrics["cityscapes_AP50"] == 1.0
    assert metrics["segm_mAP"] == 1.0 and metrics["bbox_mAP"] == 1.0
    # Classes absent from the split have nothing to measure: -1, as in the coco metric.
    assert metrics["cityscapes_AP_bus"] == -1.0 and metrics["cityscapes_AP_car"] == 1.0


def test_perturbed_predictions_score_as_cityscapesscripts_evaluator_called_by_hand(val_set, tmp_path, monkeypatch):
    import cv2
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as cs_eval

    from det_plugin_cityscapes.metric import CityscapesMetric

    rng = np.random.default_rng(0)
    detections = {}

    def detect(sample):
        detections[sample["meta"]["file"]] = _perturbed(sample, rng)
        return detections[sample["meta"]["file"]]

    metrics, _ = _evaluate(CityscapesMetric(), val_set, detect)
    assert 0.2 < metrics["cityscapes_AP"] < 0.9 and metrics["cityscapes_AP"] < metrics["cityscapes_AP50"]

    # By hand: the benchmark's prediction files, found by the evaluator's own search (CITYSCAPES_RESULTS).
    results = tmp_path / "results"
    results.mkdir()
    for file, detection in detections.items():
        name = file.rsplit("/", 1)[1].replace("_leftImg8bit.png", "")
        lines = []
        for k, (mask, label, score) in enumerate(zip(detection["masks"], detection["labels"], detection["scores"])):
            cv2.imwrite(str(results / f"{name}_{k}.png"), mask * 255)
            lines.append(f"{name}_{k}.png {val_set.cat_ids[label]} {score}\n")
        (results / f"{name}_pred.txt").write_text("".join(lines))
    monkeypatch.setenv("CITYSCAPES_RESULTS", str(results))
    # cityscapesscripts 2.3 under numpy 2.4: np.in1d is gone and counts are numpy ints its JSON dump rejects.
    monkeypatch.setattr(np, "in1d", lambda a, b: np.isin(a, b).ravel(), raising=False)
    monkeypatch.setattr(
        cs_eval, "writeDict2JSON", lambda data, path: Path(path).write_text(json.dumps(data, default=int))
    )
    monkeypatch.chdir(tmp_path)  # the evaluator writes matches.json here
    args = cs_eval.args
    for name, value in {
        "groundTruthSearch": f"{val_set.root}/gtFine/val/*/*_gtFine_instanceIds.png",
        "gtInstancesFile": str(tmp_path / "gtInstances.json"),
        "predictionPath": None, "predictionWalk": None, "JSONOutput": False, "quiet": True,
    }.items():
        monkeypatch.setattr(args, name, value)
    ground_truth = glob.glob(args.groundTruthSearch)
    by_hand = cs_eval.evaluateImgLists([cs_eval.getPrediction(g, args) for g in ground_truth], ground_truth, args)

    assert metrics["cityscapes_AP"] == pytest.approx(by_hand["averages"]["allAp"], abs=1e-12)
    assert metrics["cityscapes_AP50"] == pytest.approx(by_hand["averages"]["allAp50%"], abs=1e-12)


def test_relative_dataset_and_results_paths_evaluate_the_same(val_set, tmp_path, monkeypatch):
    from det_plugin_cityscapes.dataset import CityscapesDataset
    from det_plugin_cityscapes.metric import CityscapesMetric

    absolute, _ = _evaluate(CityscapesMetric(), val_set, lambda s: _perturbed(s, np.random.default_rng(2)))
    monkeypatch.chdir(tmp_path)
    relative_set = CityscapesDataset("cityscapes", split="val")
    metric = CityscapesMetric(results_dir="kept")
    relative, _ = _evaluate(metric, relative_set, lambda s: _perturbed(s, np.random.default_rng(2)))
    assert relative == absolute
    assert len(list((tmp_path / "kept").glob("*_pred.txt"))) == len(relative_set)


def test_metric_reads_ground_truth_from_gt_dir_for_the_converted_coco_json(val_set, tmp_path):
    from det_plugin_cityscapes.convert import convert_to_coco
    from det_plugin_cityscapes.metric import CityscapesMetric
    from detsdk.builtin.data.coco import CocoDataset

    (path,) = convert_to_coco(val_set.root, tmp_path / "annotations", splits=["val"])
    coco = CocoDataset(str(path), images=f"{val_set.root}/leftImg8bit/val", with_masks=True)
    detect = lambda sample: _perturbed(sample, np.random.default_rng(1))  # noqa: E731
    direct, _ = _evaluate(CityscapesMetric(), val_set, detect)
    converted, _ = _evaluate(CityscapesMetric(gt_dir=f"{val_set.root}/gtFine/val"), coco, detect)
    assert converted == direct


def test_metric_asks_for_masks_when_detections_have_none(val_set):
    from det_plugin_cityscapes.metric import CityscapesMetric

    def boxes_only(sample):
        return {k: v for k, v in _perfect(sample).items() if k != "masks"}

    with pytest.raises(DataError, match="the detections have no 'masks'"):
        _evaluate(CityscapesMetric(iou_types=["bbox"]), val_set, boxes_only)


def test_a_class_whose_only_predictions_are_ignored_scores_0_instead_of_crashing(val_set):
    # cityscapesScripts issue #89: a car predicted only on the (void) ego vehicle, while cars exist.
    from det_plugin_cityscapes.metric import CityscapesMetric

    def on_void_only(sample):
        mask = np.zeros((1, *sample["masks"].shape[1:]), np.uint8)
        mask[0, 60:, :] = 1
        return {"boxes": np.array([[0, 60, 128, 64]], float), "scores": np.ones(1), "labels": np.array([2]),
                "masks": mask}

    metrics, samples = _evaluate(CityscapesMetric(classwise=True, iou_types=[]), val_set, on_void_only)
    assert any((s["labels"][~s["iscrowd"]] == 2).any() for s in samples)
    assert metrics["cityscapes_AP_car"] == 0.0 and metrics["cityscapes_AP"] == 0.0
