"""The middle format (MMDetection's CustomDataset JSON): boxes, ignore boxes as crowd, bad files, training."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import tiny_recipe
from dataset_trees import random_middle

from detsdk.builtin.data.middle import MiddleDataset
from detsdk.errors import DataError, DetSDKWarning, RecipeError


def write(tmp_path, entries, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return str(path)


def entry(bboxes, labels, **ann):
    return {"filename": "a.jpg", "width": 40, "height": 30, "ann": {"bboxes": bboxes, "labels": labels, **ann}}


def test_boxes_labels_and_labelled_ignore_boxes_as_crowd(tmp_path):
    path = write(tmp_path, [entry([[1, 2, 11, 12], [0, 0, 5, 5]], [1, 0],
                                  bboxes_ignore=[[20, 20, 30, 25]], labels_ignore=[0])])
    ds = MiddleDataset(path, class_names=["cat", "dog"], images=str(tmp_path))
    sample = ds.get_annotations(0)
    np.testing.assert_array_equal(sample["boxes"], [[1, 2, 11, 12], [0, 0, 5, 5], [20, 20, 30, 25]])
    assert sample["labels"].tolist() == [1, 0, 0] and sample["iscrowd"].tolist() == [False, False, True]
    assert sample["meta"]["ori_shape"] == (30, 40) and sample["meta"]["file"] == str(tmp_path / "a.jpg")
    assert ds.classes == ["cat", "dog"] and len(ds) == 1


def test_an_ignore_box_without_labels_ignores_every_class(tmp_path):
    path = write(tmp_path, [entry([], [], bboxes_ignore=[[20, 20, 30, 25]])])
    sample = MiddleDataset(path, class_names=["a", "b", "c"]).get_annotations(0)
    assert sample["labels"].tolist() == [0, 1, 2] and sample["iscrowd"].all()


def test_boxes_without_area_are_dropped_with_a_count(tmp_path):
    path = write(tmp_path, [entry([[1, 2, 11, 12], [5, 5, 5, 9], [0, 0, float("nan"), 3]], [0, 0, 0])])
    with pytest.warns(DetSDKWarning, match="dropped 2 box"):
        ds = MiddleDataset(path, class_names=["a"])
    assert len(ds.get_annotations(0)["boxes"]) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"images": []}, "expected a JSON list of images"),
        ([entry([[0, 0, 1, 1]], [2])], r"entry 0 \(a\.jpg\): ann\.labels must be 0-based integers below 2"),
        ([entry([[0, 0, 1, 1]], [])], r"1 ann\.bboxes but 0 ann\.labels"),
        ([{"filename": "a.jpg", "ann": {}}], "entry 0: missing width, height"),
        ([entry([[0, 0, 1]], [0])], r"list of \[x1, y1, x2, y2\] boxes"),
    ],
)
def test_bad_files_name_the_entry_and_what_was_expected(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        MiddleDataset(write(tmp_path, content), class_names=["a", "b"])


def test_pickle_files_are_refused(tmp_path):
    path = tmp_path / "ann.pkl"
    path.write_bytes(b"\x80\x04]\x94.")
    with pytest.raises(DataError, match="pickle files are not read"):
        MiddleDataset(str(path), class_names=["a"])


def test_class_names_must_be_given(tmp_path):
    with pytest.raises(RecipeError, match="class_names"):
        MiddleDataset(write(tmp_path, []), class_names=[])


def test_trains_a_few_iterations_from_middle_json(tmp_path):
    from detsdk import Engine

    ann = random_middle(tmp_path / "data", 8, seed=3)
    pipeline = [{"type": "normalize"}, {"type": "pad", "size_divisor": 32}]
    table = {"type": "middle", "ann_file": str(ann), "class_names": ["red", "green"], "images": str(tmp_path / "data" / "img")}
    recipe = tiny_recipe(tmp_path / "run", runtime={"work_dir": str(tmp_path / "run"), "plot_samples": 0})
    recipe["data"].update(train={**table, "pipeline": pipeline}, val={**table, "pipeline": pipeline})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DetSDKWarning)  # nothing in these files is dropped
        metrics = Engine.from_recipe(recipe).fit()
    assert "bbox_mAP" in metrics and np.isfinite(metrics["bbox_mAP"])
