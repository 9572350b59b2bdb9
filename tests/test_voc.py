"""det-plugin-voc: the VOCdevkit layout, difficult objects as ignore, VOC AP against a reference, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import tiny_recipe
from dataset_trees import random_voc_year, write_voc_year

from detsdk.errors import DataError, RecipeError


@pytest.fixture(autouse=True)
def voc_plugin(monkeypatch):
    """Load the VOC plugin explicitly (conftest loads none but the built-ins)."""
    from detsdk.plugins import reset_registry

    monkeypatch.setenv("DETSDK_LOAD_PLUGINS", "voc")
    monkeypatch.setenv("DETSDK_STRICT_PLUGINS", "1")
    reset_registry()


def voc(root, split="trainval", **kwargs):
    from det_plugin_voc.dataset import VocDataset

    return VocDataset(str(root), split=split, **kwargs)


def metric(**kwargs):
    from det_plugin_voc.metric import VocMetric

    return VocMetric(**kwargs)


# -- dataset ---------------------------------------------------------------------------


def test_voc_reads_the_split_with_difficult_objects_as_ignore_and_0_based_boxes(tmp_path):
    write_voc_year(
        tmp_path / "VOC2007",
        {
            "000005": [
                {"name": "chair", "xmin": 11, "ymin": 21, "xmax": 30, "ymax": 40},
                {"name": "person", "xmin": 1, "ymin": 1, "xmax": 10, "ymax": 12, "difficult": True},
            ],
            "000007": [{"name": "car", "xmin": 5, "ymin": 5, "xmax": 50, "ymax": 60}],
        },
        {"trainval": ["000005"], "test": ["000007"]},
    )
    ds = voc(tmp_path / "VOC2007")
    assert len(ds) == 1 and len(ds.classes) == 20
    sample = ds.get_annotations(0)
    np.testing.assert_array_equal(sample["boxes"], [[10, 20, 30, 40], [0, 0, 10, 12]])
    assert [ds.classes[i] for i in sample["labels"]] == ["chair", "person"]
    assert sample["iscrowd"].tolist() == [False, True]
    assert sample["meta"]["image_id"] == "000005" and sample["meta"]["ori_shape"] == (64, 64)
    image = ds[0]["image"]
    assert image.shape == (64, 64, 3) and image[30, 20].max() > 200  # the chair's rectangle is drawn there


def test_a_missing_split_file_lists_the_splits_there(tmp_path):
    random_voc_year(tmp_path / "VOC2007", 2, seed=0)
    with pytest.raises(DataError, match=r"tes\.txt.*did you mean 'test'.*test, trainval"):
        voc(tmp_path / "VOC2007", split="tes")


def test_an_object_of_an_unknown_class_names_its_file(tmp_path):
    write_voc_year(tmp_path / "VOC2007", {"1": [{"name": "persn", "xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9}]},
                   {"trainval": ["1"]})
    with pytest.raises(DataError, match=r"1\.xml.*'persn'.*did you mean 'person'"):
        voc(tmp_path / "VOC2007")


# -- metric ----------------------------------------------------------------------------


def sample(image_id, boxes, labels, difficult=None):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return {"boxes": boxes, "labels": np.array(labels, np.int64),
            "iscrowd": np.array(difficult if difficult is not None else [False] * len(boxes)),
            "meta": {"image_id": image_id}}


def detection(boxes, scores, labels):
    return {"boxes": np.array(boxes, np.float64).reshape(-1, 4), "scores": np.array(scores, np.float64),
            "labels": np.array(labels, np.int64)}


class Classes:
    def __init__(self, *names):
        self.classes = list(names)


def test_a_perfect_detection_set_scores_one():
    m = metric()
    m.bind_dataset(Classes("cat", "dog"))
    gts = [sample("a", [[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]), sample("b", [[5, 5, 25, 30]], [1])]
    m.process(gts, [detection(g["boxes"], [0.9] * len(g["boxes"]), g["labels"]) for g in gts])
    out = m.compute()
    assert out["mAP"] == 1.0 and out["AP50_11points"] == 1.0 and out["AP50_area"] == 1.0
    assert out["AP_cat"] == 1.0 and out["AP_dog"] == 1.0 and out["recall"] == 1.0


def test_hand_computed_case_gives_5_9_area_and_6_11_eleven_point_ap():
    # Ranked: TP (0.9), FP (0.8, no overlap), TP (0.7), FP (0.6, a duplicate); 3 GT, one missed.
    # The difficult box's detection (0.85) counts neither way.
    gts = [
        sample("a", [[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0], difficult=[False, True]),
        sample("b", [[20, 20, 30, 30], [70, 70, 80, 80]], [0, 0]),
    ]
    dets = [
        detection([[0, 0, 10, 10], [50, 50, 60, 60], [30, 0, 40, 10]], [0.9, 0.85, 0.8], [0, 0, 0]),
        detection([[20, 20, 30, 30], [21, 20, 30, 30]], [0.7, 0.6], [0, 0]),
    ]
    area, eleven = metric(mode="area"), metric(mode="11points")
    for m in (area, eleven):
        m.bind_dataset(Classes("cat"))
        m.process(gts, dets)
    out_area, out_eleven = area.compute(), eleven.compute()
    assert out_area["mAP"] == pytest.approx(5 / 9) and out_area["AP50_11points"] == pytest.approx(6 / 11)
    assert out_eleven["mAP"] == pytest.approx(6 / 11) and out_eleven["AP_cat"] == pytest.approx(6 / 11)
    assert out_area["recall"] == pytest.approx(2 / 3) and out_area["recall_cat"] == pytest.approx(2 / 3)


def test_a_class_without_ground_truth_is_minus_one_and_left_out_of_the_mean():
    m = metric()
    m.bind_dataset(Classes("cat", "dog"))
    m.process([sample("a", [[0, 0, 10, 10]], [0])], [detection([[0, 0, 10, 10], [5, 5, 9, 9]], [0.9, 0.8], [0, 1])])
    out = m.compute()
    assert out["AP_dog"] == -1.0 and out["mAP"] == 1.0


def reference_voc_ap(gts, dets, label, iou_thr, use_07):
    """The VOC devkit's voc_eval, transcribed plainly: loops, no vectorisation (IoU on continuous boxes)."""
    records, npos = {}, 0
    for g in gts:
        keep = g["labels"] == label
        records[g["meta"]["image_id"]] = {"bbox": g["boxes"][keep], "difficult": g["iscrowd"][keep],
                                          "det": [False] * int(keep.sum())}
        npos += int((~g["iscrowd"][keep]).sum())
    found = []
    for g, d in zip(gts, dets):
        for box, score, lab in zip(d["boxes"], d["scores"], d["labels"]):
            if lab == label:
                found.append((score, g["meta"]["image_id"], box))
    found.sort(key=lambda t: -t[0])
    tp, fp = np.zeros(len(found)), np.zeros(len(found))
    for k, (_, image_id, bb) in enumerate(found):
        record = records[image_id]
        ovmax, jmax = -math.inf, -1
        for j, gt in enumerate(record["bbox"]):
            iw = max(min(gt[2], bb[2]) - max(gt[0], bb[0]), 0.0)
            ih = max(min(gt[3], bb[3]) - max(gt[1], bb[1]), 0.0)
            inter = iw * ih
            union = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - inter
            if inter / union > ovmax:
                ovmax, jmax = inter / union, j
        if ovmax > iou_thr:
            if not record["difficult"][jmax]:
                if not record["det"][jmax]:
                    tp[k] = 1
                    record["det"][jmax] = True
                else:
                    fp[k] = 1
        else:
            fp[k] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        return sum((prec[rec >= t].max() if (rec >= t).any() else 0.0) / 11 for t in np.arange(0.0, 1.1, 0.1))
    mrec, mpre = np.concatenate(([0.0], rec, [1.0])), np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_matches_the_devkit_reference_on_random_noisy_detections(seed):
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for image in range(12):
        count = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, size=(count, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(8, 40, size=(count, 2))], axis=1)
        labels = rng.integers(0, 3, size=count)
        gts.append(sample(image, boxes, labels, difficult=rng.random(count) < 0.2))
        # Jittered copies of the ground truth, some duplicates and some pure false positives.
        noisy = np.concatenate([boxes + rng.normal(0, 3, boxes.shape), boxes[: count // 2] + 1.5,
                                np.concatenate([xy2 := rng.uniform(0, 80, (2, 2)), xy2 + 15], axis=1)])
        dets.append(detection(noisy, rng.random(len(noisy)), np.concatenate([labels, labels[: count // 2],
                                                                             rng.integers(0, 3, 2)])))
    for mode, use_07 in (("area", False), ("11points", True)):
        m = metric(mode=mode)
        m.bind_dataset(Classes("a", "b", "c"))
        m.process(gts, dets)
        out = m.compute()
        for label, name in enumerate("abc"):
            assert out[f"AP_{name}"] == pytest.approx(reference_voc_ap(gts, dets, label, 0.5, use_07), abs=1e-12)


def test_bad_metric_settings_are_recipe_errors():
    with pytest.raises(RecipeError, match="did you mean '11points'"):
        metric(mode="11point")
    with pytest.raises(RecipeError, match="iou_thrs"):
        metric(iou_thrs=[1.5])


# -- end to end ------------------------------------------------------------------------


def test_trains_on_voc07_plus_12_and_evaluates_with_the_voc_metric(tmp_path):
    from detsdk import Engine

    devkit = tmp_path / "VOCdevkit"
    random_voc_year(devkit / "VOC2007", 6, seed=7)
    random_voc_year(devkit / "VOC2012", 4, seed=12)
    pipeline = [{"type": "normalize"}, {"type": "pad", "size_divisor": 32}]
    names = ["cat", "dog"]
    train = {"type": "repeat", "times": 2, "pipeline": pipeline, "dataset": {"type": "concat", "datasets": [
        {"type": "voc", "root": str(devkit / "VOC2007"), "classes": names},
        {"type": "voc", "root": str(devkit / "VOC2012"), "classes": names},
    ]}}
    val = {"type": "voc", "root": str(devkit / "VOC2007"), "split": "test", "classes": names, "pipeline": pipeline}
    recipe = tiny_recipe(tmp_path / "run", eval={"metric": {"type": "voc"}},
                         runtime={"work_dir": str(tmp_path / "run"), "plot_samples": 0})
    recipe["data"].update(train=train, val=val)
    engine = Engine.from_recipe(recipe)
    assert len(engine.dataset("train")) == 2 * (6 + 4)
    metrics = engine.fit()
    assert list(metrics)[0] == "mAP" and {"AP50", "AP50_11points", "recall", "AP_cat", "AP_dog"} <= metrics.keys()
    assert 0.0 <= metrics["mAP"] <= 1.0 and engine.classes == names


def test_the_voc0712_recipe_resolves_to_mmdetections_settings():
    from detsdk.plugins import get_registry
    from detsdk.recipe import load_recipe, validate_recipe, with_defaults

    recipe = load_recipe(get_registry().recipe_path("voc:faster_rcnn_r50_fpn_1x_voc0712.toml"))
    validate_recipe(recipe)
    config = with_defaults(recipe.data)
    train = config["data"]["train"]
    assert train["type"] == "repeat" and train["times"] == 3
    assert [d["root"] for d in train["dataset"]["datasets"]] == ["data/VOCdevkit/VOC2007", "data/VOCdevkit/VOC2012"]
    assert train["pipeline"][0]["scale"] == [1000, 600]
    assert config["data"]["test"]["split"] == "test" and config["eval"]["metric"] == {
        "type": "voc", "iou_thrs": [0.5], "mode": "area"}
    assert config["train"]["epochs"] == 4 and config["train"]["optimizer"]["lr"] == 0.01
    assert config["train"]["scheduler"]["milestones"] == [3] and config["train"]["scheduler"]["warmup_iters"] == 0
