"""The cityscapes plugin's dataset and converter on a tiny tree in the official layout.

``make_cityscapes_tree`` (in the plugin's ``check_fixture``, which the conformance
kit uses too) writes two cities of 64x128 frames with polygons, instance and label
PNGs and painted images. The other cityscapes tests import it from here.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from det_plugin_cityscapes.check_fixture import HEIGHT, WIDTH, make_cityscapes_tree

from detsdk.errors import DataError


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "cityscapes"
    return root, make_cityscapes_tree(root)


def _by_file(dataset):
    return {dataset.frames[i].image: dataset[i] for i in range(len(dataset))}


def test_dataset_reads_the_8_classes_with_boxes_masks_and_crowd_regions(tree):
    from det_plugin_cityscapes.dataset import CityscapesDataset

    root, expected = tree
    dataset = CityscapesDataset(str(root), split="train")
    assert dataset.classes == ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    assert dataset.cat_ids == [24, 25, 26, 27, 28, 31, 32, 33]
    assert len(dataset) == 4
    for file, sample in _by_file(dataset).items():
        assert sample["image"].shape == (HEIGHT, WIDTH, 3)
        got = sorted(
            (dataset.classes[label], tuple(box.tolist()), bool(crowd))
            for label, box, crowd in zip(sample["labels"], sample["boxes"], sample["iscrowd"])
        )
        assert got == sorted((label, tuple(float(v) for v in box), crowd) for label, box, crowd in expected[file])
        assert sample["masks"].shape == (len(got), HEIGHT, WIDTH)
        np.testing.assert_array_equal(sample["masks"].reshape(len(got), -1).sum(1), sample["areas"])
        assert sample["meta"]["annotation_file"].endswith("_gtFine_instanceIds.png")


def test_polygon_source_gives_the_same_samples_as_instance_images(tree):
    from det_plugin_cityscapes.dataset import CityscapesDataset

    root, _ = tree
    from_png = CityscapesDataset(str(root), split="val")
    from_json = CityscapesDataset(str(root), split="val", annotations="polygons")
    for i in range(len(from_png)):
        a, b = from_png.get_annotations(i), from_json.get_annotations(i)
        for key in ("boxes", "labels", "iscrowd", "masks", "areas"):
            np.testing.assert_array_equal(a[key], b[key])


def test_filter_empty_leaves_out_frames_without_a_non_crowd_instance(tmp_path):
    from det_plugin_cityscapes.dataset import CityscapesDataset

    root = tmp_path / "cityscapes"
    make_cityscapes_tree(root, {"train": {"aachen": 4}})
    instance_files = sorted((root / "gtFine" / "train" / "aachen").glob("*_instanceIds.png"))
    crowd_only, empty = instance_files[0], instance_files[1]
    ids = cv2.imread(str(crowd_only), cv2.IMREAD_UNCHANGED).astype(np.int32)
    ids[ids >= 1000] //= 1000  # every instance becomes its class's group region
    cv2.imwrite(str(crowd_only), ids.astype(np.uint16))
    cv2.imwrite(str(empty), np.full((HEIGHT, WIDTH), 7, np.uint16))  # road only

    kept = CityscapesDataset(str(root), split="train", filter_empty=True)
    assert [f.instance_ids for f in kept.frames] == [str(p) for p in instance_files[2:]]
    assert kept.image_ids == [2, 3]  # positions in the unfiltered split, as in the converted JSON
    assert len(CityscapesDataset(str(root), split="train")) == 4


def test_convert_writes_coco_json_that_the_coco_dataset_reads_back_identically(tree, tmp_path):
    from det_plugin_cityscapes.convert import convert_to_coco
    from det_plugin_cityscapes.dataset import CityscapesDataset
    from detsdk.builtin.data.coco import CocoDataset

    root, _ = tree
    paths = convert_to_coco(root, tmp_path / "annotations")
    assert [p.name for p in paths] == [
        "instancesonly_filtered_gtFine_train.json", "instancesonly_filtered_gtFine_val.json"
    ]
    data = json.loads(paths[1].read_text())
    assert [c["id"] for c in data["categories"]] == [24, 25, 26, 27, 28, 31, 32, 33]
    assert data["images"][0]["file_name"] == "aachen/aachen_000000_000019_leftImg8bit.png"
    assert data["images"][0]["segm_file"] == "aachen/aachen_000000_000019_gtFine_labelIds.png"
    coco = CocoDataset(str(paths[1]), images=str(root / "leftImg8bit" / "val"), with_masks=True)
    cityscapes = CityscapesDataset(str(root), split="val")
    assert coco.classes == cityscapes.classes and coco.cat_ids == cityscapes.cat_ids
    for i in range(len(coco)):
        a, b = coco[i], cityscapes[i]
        for key in ("boxes", "labels", "iscrowd", "masks", "areas"):
            np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a["image"], b["image"])


def test_sdk_cityscapes_convert_command_writes_one_file_per_split(tree, tmp_path, run_sdk):
    root, _ = tree
    env = {"DETSDK_LOAD_PLUGINS": "cityscapes", "DETSDK_STRICT_PLUGINS": "1"}
    code, out, err = run_sdk("cityscapes", "convert", root, "--out", tmp_path / "out", "--split", "val", env=env)
    assert code == 0, err
    assert out.strip() == f"wrote {tmp_path / 'out' / 'instancesonly_filtered_gtFine_val.json'}"
    assert len(json.loads((tmp_path / "out" / "instancesonly_filtered_gtFine_val.json").read_text())["images"]) == 3

    code, out, err = run_sdk("cityscapes", "convert", tmp_path / "nowhere", "--out", tmp_path / "out", env=env)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{tmp_path / 'nowhere' / 'leftImg8bit'}" in err


def test_missing_gtfine_folder_is_a_data_error_naming_it(tree):
    import shutil

    from det_plugin_cityscapes.dataset import CityscapesDataset

    root, _ = tree
    shutil.rmtree(root / "gtFine" / "val")
    with pytest.raises(DataError, match=f"annotation folder not found: {root / 'gtFine' / 'val'}"):
        CityscapesDataset(str(root), split="val")


def test_image_without_annotation_file_is_a_data_error_naming_both(tree):
    from det_plugin_cityscapes.dataset import CityscapesDataset

    root, _ = tree
    orphan = root / "leftImg8bit" / "val" / "bochum" / "bochum_000009_000009_leftImg8bit.png"
    orphan.write_bytes((root / "leftImg8bit" / "val" / "bochum" / "bochum_000000_000019_leftImg8bit.png").read_bytes())
    missing = root / "gtFine" / "val" / "bochum" / "bochum_000009_000009_gtFine_instanceIds.png"
    with pytest.raises(DataError, match=f"{orphan} has no annotation file {missing} \\(1 of 4 images"):
        CityscapesDataset(str(root), split="val")


def test_unknown_label_in_a_polygon_file_is_a_data_error_naming_file_and_label(tree):
    from det_plugin_cityscapes.dataset import CityscapesDataset

    root, _ = tree
    polygons = root / "gtFine" / "val" / "aachen" / "aachen_000001_000020_gtFine_polygons.json"
    data = json.loads(polygons.read_text())
    data["objects"][3]["label"] = "motorbike"
    polygons.write_text(json.dumps(data))
    dataset = CityscapesDataset(str(root), split="val", annotations="polygons")
    expected = f"{polygons}: object 3 has unknown label 'motorbike' \\(did you mean 'motorcycle'"
    with pytest.raises(DataError, match=expected):
        dataset[1]
