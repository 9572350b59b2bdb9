"""repeat, concat and the generic dataset keys (classes, min_size, filter_empty), built and validated from recipes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_recipe
from dataset_trees import random_middle

from detsdk.builtin.data.coco import CocoDataset
from detsdk.engine.build import build_dataset
from detsdk.errors import DetSDKError, DetSDKWarning, RecipeError
from detsdk.recipe import load_recipe, validate_recipe


def middle(tmp_path, class_names=("a", "b", "c"), count=4, seed=0, **generic):
    folder = tmp_path / f"m{seed}"
    ann = folder / "ann.json" if (folder / "ann.json").exists() else random_middle(folder, count, seed, len(class_names))
    return {"type": "middle", "ann_file": str(ann), "class_names": list(class_names), "images": str(folder / "img"),
            **generic}


def labels_of(dataset):
    return [dataset.get_annotations(i)["labels"].tolist() for i in range(len(dataset))]


def test_repeat_is_times_as_long_and_repeats_the_samples(tmp_path):
    inner = build_dataset(middle(tmp_path), "data.train")
    repeated = build_dataset({"type": "repeat", "times": 3, "dataset": middle(tmp_path)}, "data.train")
    assert len(repeated) == 3 * len(inner) == 12
    assert labels_of(repeated) == labels_of(inner) * 3
    assert repeated[5]["meta"]["file"] == inner[1]["meta"]["file"]
    with pytest.raises(IndexError):
        repeated[12]


def test_concat_appends_and_maps_labels_by_class_name(tmp_path):
    first = middle(tmp_path, ("a", "b", "c"), seed=0)
    second = middle(tmp_path, ("c", "a", "b"), seed=1)
    joined = build_dataset({"type": "concat", "datasets": [first, second]}, "data.train")
    own_second = build_dataset(second, "data.train")
    assert len(joined) == 8 and joined.classes == ["a", "b", "c"]
    names = [[own_second.classes[k] for k in labels] for labels in labels_of(own_second)]
    assert [[joined.classes[k] for k in labels] for labels in labels_of(joined)[4:]] == names
    assert joined.get_annotations(5)["meta"]["image_id"] == "1:2"


def test_concat_of_different_classes_names_the_datasets_and_the_classes(tmp_path):
    spec = {"type": "concat", "datasets": [middle(tmp_path, ("a", "b")), middle(tmp_path, ("a", "zebra"), seed=1)]}
    with pytest.raises(RecipeError) as error:
        build_dataset(spec, "data.train")
    message = str(error.value)
    assert "datasets[0] (MiddleDataset(" in message and "datasets[1] (MiddleDataset(" in message
    assert "only in datasets[0]: 'b'" in message and "only in datasets[1]: 'zebra'" in message
    assert "classes = [...]" in message


def test_concat_classes_made_to_agree_with_a_subset_on_each_table(tmp_path):
    spec = {"type": "concat", "datasets": [middle(tmp_path, ("a", "b"), classes=["a"]),
                                           middle(tmp_path, ("a", "zebra"), seed=1, classes=["a"])]}
    with pytest.warns(DetSDKWarning):
        joined = build_dataset(spec, "data.train")
    assert joined.classes == ["a"] and all(set(labels) <= {0} for labels in labels_of(joined))


def test_a_classes_subset_keeps_and_renumbers_in_the_given_order(tmp_path):
    full = build_dataset(middle(tmp_path), "data.train")
    with pytest.warns(DetSDKWarning, match=r"data.train: kept 2 of 3 classes, dropping \d+ box"):
        subset = build_dataset(middle(tmp_path, classes=["c", "a"]), "data.train")
    assert subset.classes == ["c", "a"] and len(subset) == len(full)
    for i in range(len(full)):
        names = [full.classes[k] for k in full.get_annotations(i)["labels"] if full.classes[k] in ("a", "c")]
        assert [subset.classes[k] for k in subset.get_annotations(i)["labels"]] == names
        assert len(subset[i]["boxes"]) == len(names)


def test_an_unknown_class_in_classes_suggests_the_nearest(tmp_path):
    with pytest.raises(RecipeError, match=r"data.train.classes: unknown class 'bb' \(did you mean 'b'\?\)"):
        build_dataset(middle(tmp_path, classes=["bb"]), "data.train")


def test_min_size_makes_small_boxes_ignore_and_filter_empty_drops_images_with_counts(tmp_path):
    entries = [
        {"filename": "0.png", "width": 64, "height": 64, "ann": {"bboxes": [[0, 0, 3, 20], [10, 10, 40, 40]], "labels": [0, 1]}},
        {"filename": "1.png", "width": 64, "height": 64, "ann": {"bboxes": [[0, 0, 3, 3]], "labels": [0]}},
        {"filename": "2.png", "width": 64, "height": 64, "ann": {"bboxes": [], "labels": []}},
    ]
    (tmp_path / "ann.json").write_text(json.dumps(entries))
    spec = {"type": "middle", "ann_file": str(tmp_path / "ann.json"), "class_names": ["a", "b"],
            "min_size": 4, "filter_empty": True}
    with pytest.warns(DetSDKWarning, match=r"2 box\(es\) smaller than min_size = 4 px became ignore regions; "
                                           r"left out 2 of 3 image\(s\) without a box"):
        ds = build_dataset(spec, "data.train")
    assert len(ds) == 1 and ds.get_annotations(0)["iscrowd"].tolist() == [True, False]


def test_coco_with_a_class_subset_keeps_exact_ground_truth_for_the_coco_metric(tmp_path):
    from conftest import SHARED_DATA

    ann = SHARED_DATA / "coco-val2014-100" / "instances_val2014_100.json"
    with pytest.warns(DetSDKWarning, match="kept 2 of 80 classes"):
        ds = build_dataset({"type": "coco", "ann_file": str(ann), "classes": ["dog", "cat"], "filter_empty": True},
                           "data.val")
    full = CocoDataset(str(ann))
    assert ds.classes == ["dog", "cat"] and ds.cat_ids == [18, 17]
    assert [c["name"] for c in ds.coco_gt["categories"]] == ["dog", "cat"]
    assert {a["category_id"] for a in ds.coco_gt["annotations"]} <= {17, 18}
    def has_cat_or_dog(sample):
        return bool(np.isin(sample["labels"][~sample["iscrowd"]], [15, 16]).any())

    kept = {full.image_ids[i] for i in range(len(full)) if has_cat_or_dog(full.get_annotations(i))}
    assert {image["id"] for image in ds.coco_gt["images"]} == kept and len(ds) == len(kept)


def test_nested_dataset_tables_are_validated_with_their_key_path():
    def recipe(inner):
        return load_recipe({"data": {"train": {"type": "repeat", "times": 2, "dataset": {
            "type": "concat", "datasets": [{"type": "shapes"}, inner]}}}})

    validate_recipe(recipe({"type": "shapes", "split": "val", "classes": ["circle"], "min_size": 2}))
    with pytest.raises(RecipeError, match=r"data.train.dataset.datasets\[1\].*did you mean 'num_images'"):
        validate_recipe(recipe({"type": "shapes", "num_image": 3}))
    with pytest.raises(DetSDKError, match=r"data.train.dataset.datasets\[1\].type.*did you mean 'shapes'"):
        validate_recipe(recipe({"type": "shape"}))
    with pytest.raises(RecipeError, match=r"datasets\[1\].pipeline': a nested dataset has no pipeline"):
        validate_recipe(recipe({"type": "shapes", "pipeline": []}))
    with pytest.raises(RecipeError, match=r"datasets\[1\].min_size' = -1"):
        validate_recipe(recipe({"type": "shapes", "min_size": -1}))
    with pytest.raises(RecipeError, match=r"datasets\[1\].classes' = 'circle'"):
        validate_recipe(recipe({"type": "shapes", "classes": "circle"}))


def test_trains_on_a_repeated_concat_with_a_class_subset(tmp_path):
    from detsdk import Engine

    shapes = {"type": "shapes", "num_images": 4, "image_size": 64}
    recipe = tiny_recipe(tmp_path / "run", runtime={"work_dir": str(tmp_path / "run"), "plot_samples": 0})
    recipe["data"]["train"] = {
        "type": "repeat", "times": 2, "pipeline": recipe["data"]["train"]["pipeline"],
        "dataset": {"type": "concat", "datasets": [{**shapes, "split": "train"}, {**shapes, "split": "test"}],
                    "classes": ["square", "circle"], "filter_empty": True},
    }
    recipe["data"]["val"]["classes"] = ["square", "circle"]
    engine = Engine.from_recipe(recipe)
    metrics = engine.fit()
    assert engine.classes == ["square", "circle"]
    assert np.isfinite(metrics["bbox_mAP"])
