"""det-plugin-widerface: the official text files (quirks included), AP as MMDetection reports it, easy/medium/hard."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_recipe
from dataset_trees import random_widerface, write_widerface

from detsdk.errors import DataError, DetSDKWarning, RecipeError


@pytest.fixture(autouse=True)
def widerface_plugin(monkeypatch):
    """Load the WIDER FACE plugin explicitly (conftest loads none but the built-ins)."""
    from detsdk.plugins import reset_registry

    monkeypatch.setenv("DETSDK_LOAD_PLUGINS", "widerface")
    monkeypatch.setenv("DETSDK_STRICT_PLUGINS", "1")
    reset_registry()


def widerface(ann_file, images=""):
    from det_plugin_widerface.dataset import WiderFaceDataset

    return WiderFaceDataset(str(ann_file), images=str(images))


def test_faces_invalid_ones_as_ignore_and_the_count_zero_quirk(tmp_path):
    ann_file, images = write_widerface(tmp_path, {
        "0--Parade/0_Parade_1.jpg": [(4, 5, 10, 12, False), (30, 30, 8, 8, True)],
        "0--Parade/0_Parade_2.jpg": [],  # count 0, then a line of zeros that is not a face
        "1--Handshaking/1_Handshaking_3.jpg": [(1, 2, 20, 20, False)],
    }, split="val")
    ds = widerface(ann_file, images)
    assert len(ds) == 3 and ds.classes == ["face"]
    first = ds.get_annotations(0)
    np.testing.assert_array_equal(first["boxes"], [[4, 5, 14, 17], [30, 30, 38, 38]])
    assert first["iscrowd"].tolist() == [False, True] and first["labels"].tolist() == [0, 0]
    assert first["meta"]["image_id"] == "0--Parade/0_Parade_1" and first["meta"]["ori_shape"] == (64, 64)
    assert len(ds.get_annotations(1)["boxes"]) == 0
    assert ds.get_annotations(2)["boxes"].tolist() == [[1, 2, 21, 22]]
    assert ds[2]["image"][10, 10].max() > 200


def test_faces_without_width_or_height_are_dropped_with_a_count(tmp_path):
    ann_file, images = write_widerface(tmp_path, {"0--Parade/a.jpg": [(4, 5, 0, 12, False), (4, 5, 9, 9, False)]})
    with pytest.warns(DetSDKWarning, match="dropped 1 face"):
        ds = widerface(ann_file, images)
    assert len(ds.get_annotations(0)["boxes"]) == 1


def test_a_malformed_face_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("0--Parade/a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n1 2 3\n")
    with pytest.raises(DataError, match=r"gt\.txt:4: expected 10 numbers"):
        widerface(path)
    path.write_text("0--Parade/a.jpg\n3\n1 2 3 4 0 0 0 0 0 0\n")
    with pytest.raises(DataError, match="announces 3 faces but the file ends after 1"):
        widerface(path)


# -- metric ----------------------------------------------------------------------------

FACES = {  # x y w h per image; event 0--Parade
    "0_Parade_a": [[0, 0, 10, 10], [20, 20, 10, 10], [40, 40, 10, 10]],
    "0_Parade_b": [[0, 0, 20, 20]],
}
KEPT = {"easy": {"0_Parade_a": [1], "0_Parade_b": []}, "medium": {"0_Parade_a": [1, 2], "0_Parade_b": [1]},
        "hard": {"0_Parade_a": [1, 2, 3], "0_Parade_b": [1]}}
# a: two exact hits (0.9, 0.6) and a false one (0.8); b: an exact hit (0.3).
DETECTIONS = {"0_Parade_a": ([[0, 0, 10, 10], [20, 20, 30, 30], [60, 0, 70, 10]], [0.9, 0.6, 0.8]),
              "0_Parade_b": ([[0, 0, 20, 20]], [0.3])}


def write_official_mat(folder):
    """wider_face_val.mat and wider_{easy,medium,hard}_val.mat with the official structure (cell arrays)."""
    from scipy.io import savemat

    def cells(values):
        array = np.empty((len(values), 1), dtype=object)
        for i, value in enumerate(values):
            array[i, 0] = value
        return array

    names = list(FACES)
    face = {"event_list": cells(["0--Parade"]), "file_list": cells([cells(names)]),
            "face_bbx_list": cells([cells([np.array(FACES[n], dtype=np.float64) for n in names])])}
    savemat(str(folder / "wider_face_val.mat"), face)
    for setting, kept in KEPT.items():
        lists = cells([np.array(kept[n], dtype=np.float64).reshape(-1, 1) for n in names])
        savemat(str(folder / f"wider_{setting}_val.mat"), {"gt_list": cells([lists])})
    return folder


def samples_and_detections(invalid_third=False):
    samples, detections = [], []
    for name, faces in FACES.items():
        xywh = np.array(faces, np.float32)
        crowd = np.zeros(len(faces), bool)
        if invalid_third and name == "0_Parade_a":
            crowd[2] = True
        samples.append({"boxes": np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), "labels": np.zeros(len(faces)),
                        "iscrowd": crowd, "meta": {"image_id": name, "file": f"WIDER_val/images/0--Parade/{name}.jpg"}})
        boxes, scores = DETECTIONS[name]
        detections.append({"boxes": np.array(boxes, float), "scores": np.array(scores), "labels": np.zeros(len(scores), int)})
    return samples, detections


def test_ap_at_iou_half_as_mmdetection_reports_it_hand_computed():
    from det_plugin_widerface.metric import WiderFaceMetric

    # Ranked TP, FP, TP, TP over 4 faces: recall .25 .25 .5 .75, precision 1 .5 .67 .75 -> 0.625.
    metric = WiderFaceMetric()
    metric.process(*samples_and_detections())
    out = metric.compute()
    assert out["mAP"] == pytest.approx(0.625) and out["AP50"] == out["mAP"] and out["recall"] == pytest.approx(0.75)
    # With the missed face invalid (ignored), 3 faces: 1/3 + 1/3 * .75 + 1/3 * .75.
    metric = WiderFaceMetric()
    metric.process(*samples_and_detections(invalid_third=True))
    assert metric.compute()["mAP"] == pytest.approx(5 / 6)


def test_ap_11_points_as_mmdetection_3_reports_it_hand_computed():
    from det_plugin_widerface.metric import WiderFaceMetric

    # Recall .25 .25 .5 .75, precision 1 .5 .67 .75: the best precision at recall >= 0, .1, ... 1
    # is 1 three times, .75 five times, 0 three times.
    metric = WiderFaceMetric(ap_mode="11points")
    metric.process(*samples_and_detections())
    assert metric.compute()["mAP"] == pytest.approx((3 * 1.0 + 5 * 0.75) / 11)


def test_easy_medium_hard_follow_the_official_evaluation_hand_computed(tmp_path):
    from det_plugin_widerface.metric import WiderFaceMetric

    metric = WiderFaceMetric(gt_dir=str(write_official_mat(tmp_path)))
    metric.process(*samples_and_detections())
    out = metric.compute()
    # easy: only a's first face counts; the other hits match ignored faces and drop out -> 1.0.
    # medium: 3 faces, ranked TP FP TP TP -> 1/3 + 1/3 * .75 + 1/3 * .75; hard: as MMDetection's 0.625.
    assert out["AP_easy"] == pytest.approx(1.0)
    assert out["AP_medium"] == pytest.approx(5 / 6)
    assert out["AP_hard"] == pytest.approx(0.625)


def test_a_gt_dir_without_the_official_files_is_refused(tmp_path):
    from det_plugin_widerface.metric import WiderFaceMetric

    with pytest.raises(RecipeError, match="lacks wider_face_val.mat, wider_easy_val.mat"):
        WiderFaceMetric(gt_dir=str(tmp_path))


# -- end to end ------------------------------------------------------------------------


def test_trains_a_few_iterations_and_evaluates_with_the_widerface_metric(tmp_path):
    from detsdk import Engine

    train_file, train_images = random_widerface(tmp_path / "WIDERFace", 8, seed=1, split="train")
    val_file, val_images = random_widerface(tmp_path / "WIDERFace", 4, seed=2, split="val")
    pipeline = [{"type": "normalize"}, {"type": "pad", "size_divisor": 32}]
    recipe = tiny_recipe(tmp_path / "run", eval={"metric": {"type": "widerface"}},
                         runtime={"work_dir": str(tmp_path / "run"), "plot_samples": 0})
    recipe["data"].update(
        train={"type": "widerface", "ann_file": str(train_file), "images": str(train_images), "filter_empty": True,
               "min_size": 2, "pipeline": pipeline},
        val={"type": "widerface", "ann_file": str(val_file), "images": str(val_images), "pipeline": pipeline},
    )
    engine = Engine.from_recipe(recipe)
    assert len(engine.dataset("train")) == 7  # the image without a face is left out
    metrics = engine.fit()
    assert list(metrics)[:3] == ["mAP", "AP50", "recall"] and 0.0 <= metrics["mAP"] <= 1.0
    assert engine.classes == ["face"]


def test_the_retinanet_recipe_validates_with_the_widerface_data():
    from detsdk.plugins import get_registry
    from detsdk.recipe import load_recipe, validate_recipe, with_defaults

    recipe = load_recipe(get_registry().recipe_path("widerface:retinanet_r50_fpn_widerface.toml"))
    validate_recipe(recipe)
    config = with_defaults(recipe.data)
    assert config["model"]["type"] == "retinanet" and config["data"]["train"]["type"] == "widerface"
    assert config["eval"]["metric"]["type"] == "widerface"


def test_the_retinanet_recipe_resolves_to_mmdetection_3_3s_widerface_config():
    """configs/wider_face/retinanet_r50_fpn_1x_widerface.py with its bases, key by key."""
    from detsdk.plugins import get_registry
    from detsdk.recipe import load_recipe, with_defaults

    core = load_recipe(get_registry().recipe_path("detsdk:retinanet_r50_fpn_1x_coco.toml")).data
    config = with_defaults(load_recipe(get_registry().recipe_path("widerface:retinanet_r50_fpn_widerface.toml")).data)
    assert config["model"] == core["model"]  # RetinaNet R50-FPN, anchors from 32 px on P3, 100 detections
    assert config["train"]["epochs"] == 12
    assert config["train"]["optimizer"] == {"type": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
    scheduler = config["train"]["scheduler"]
    assert (scheduler["milestones"], scheduler["gamma"], scheduler["warmup_iters"], scheduler["warmup_ratio"]) == (
        [8, 11], 0.1, 500, 0.001)
    assert config["data"]["batch_size"] == 2  # x 8 GPUs: the 16 images lr 0.01 is for
    train, val = config["data"]["train"], config["data"]["val"]
    assert (train["min_size"], train["filter_empty"]) == (17, True)  # bbox_min_size = 17, filter_empty_gt
    assert [(t["type"], t.get("scale"), t.get("p")) for t in train["pipeline"]] == [
        ("resize", [640, 640], None), ("random_flip", None, 0.5), ("normalize", None, None), ("pad", None, None)]
    assert [(t["type"], t.get("scale")) for t in val["pipeline"]] == [
        ("resize", [640, 640]), ("normalize", None), ("pad", None)]
    assert all(t.get("keep_ratio", True) for t in train["pipeline"] + val["pipeline"])
    assert config["data"]["test"] == val
    assert config["eval"]["metric"] == {"type": "widerface", "iou_thr": 0.5, "ap_mode": "11points", "gt_dir": ""}
