"""CocoDataset: real COCO quirks, tiny hand-made files, and every DataError a user can hit."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA
from pycocotools import mask as mask_utils

from detsdk.builtin.data.coco import CocoDataset
from detsdk.errors import DataError, DetSDKWarning

REAL = SHARED_DATA / "coco-val2014-100" / "instances_val2014_100.json"  # ../shared/data, beside the checkout


@pytest.fixture(scope="module")
def real() -> CocoDataset:
    return CocoDataset(str(REAL), images="/nonexistent/val2014", with_masks=True)


def write_tiny(folder: Path, annotations: list | None = None, images: list | None = None, **extra) -> Path:
    """Two 20x30 images (red, blue) and a JSON whose images list is not in id order."""
    (folder / "img").mkdir(exist_ok=True)
    for name, bgr in (("a.png", (0, 0, 255)), ("b.png", (255, 0, 0))):
        cv2.imwrite(str(folder / "img" / name), np.full((20, 30, 3), bgr, np.uint8))
    data = {
        "images": images
        if images is not None
        else [
            {"id": 7, "file_name": "a.png", "height": 20, "width": 30},
            {"id": 3, "file_name": "b.png", "height": 20, "width": 30},
        ],
        "annotations": annotations
        if annotations is not None
        else [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 2, 10, 5], "iscrowd": 0, "area": 50}],
        "categories": [{"id": 5, "name": "zebra"}, {"id": 2, "name": "ant"}],
        **extra,
    }
    path = folder / "ann.json"
    path.write_text(json.dumps(data))
    return path


# -- real COCO annotations ----------------------------------------------------------


def test_real_coco_slice_has_100_images_and_80_classes(real):
    assert len(real) == 100
    assert len(real.classes) == 80 and real.classes[0] == "person"
    assert real.cat_ids == sorted(real.cat_ids) and len(real.cat_ids) == 80


def test_real_coco_keeps_all_839_instances_with_9_crowd(real):
    samples = [real.get_annotations(i) for i in range(len(real))]
    assert sum(len(s["boxes"]) for s in samples) == 839
    assert sum(int(s["iscrowd"].sum()) for s in samples) == 9


def test_real_coco_masks_decode_for_every_annotation_including_crowd_rle(real):
    for i in range(len(real)):
        sample = real.get_annotations(i)
        masks = sample["masks"]
        assert masks.dtype == np.uint8 and masks.shape == (len(sample["boxes"]), *sample["meta"]["ori_shape"])
        assert masks.reshape(len(masks), -1).any(axis=1).all()


def test_get_annotations_never_reads_images(real):
    sample = real.get_annotations(0)
    first = real.coco_gt["images"][0]
    assert "image" not in sample
    assert sample["meta"]["image_id"] == first["id"]
    assert sample["meta"]["ori_shape"] == (first["height"], first["width"])


def test_coco_gt_is_the_loaded_json(real):
    assert real.coco_gt == json.loads(REAL.read_text())


def test_boxes_are_converted_from_xywh_to_corners(real):
    first = next(a for a in real.coco_gt["annotations"] if a["image_id"] == real.image_ids[0])
    x, y, w, h = first["bbox"]
    assert np.allclose(real.get_annotations(0)["boxes"][0], [x, y, x + w, y + h])


# -- tiny files --------------------------------------------------------------------


def test_sample_is_rgb_image_with_typed_annotations(tmp_path):
    dataset = CocoDataset(str(write_tiny(tmp_path)), images=str(tmp_path / "img"))
    sample = dataset[0]
    assert sample["image"].shape == (20, 30, 3) and sample["image"].dtype == np.uint8
    assert tuple(sample["image"][0, 0]) == (255, 0, 0)  # a.png is red
    assert sample["boxes"].dtype == np.float32 and sample["boxes"].tolist() == [[1, 2, 11, 7]]
    assert sample["labels"].dtype == np.int64 and sample["labels"].tolist() == [1]  # id 5 sorts after id 2
    assert sample["iscrowd"].dtype == bool
    assert sample["meta"]["file"] == str(tmp_path / "img" / "a.png") and sample["meta"]["ori_shape"] == (20, 30)


def test_classes_sorted_by_category_id_and_cat_ids_map_back(tmp_path):
    dataset = CocoDataset(str(write_tiny(tmp_path)))
    assert dataset.classes == ["ant", "zebra"] and dataset.cat_ids == [2, 5]


def test_image_order_follows_the_json_images_list(tmp_path):
    dataset = CocoDataset(str(write_tiny(tmp_path)))
    assert [dataset.get_annotations(i)["meta"]["image_id"] for i in range(len(dataset))] == [7, 3]


def test_image_without_annotations_has_empty_arrays(tmp_path):
    sample = CocoDataset(str(write_tiny(tmp_path)), images=str(tmp_path / "img"), with_masks=True)[1]
    assert sample["boxes"].shape == (0, 4) and sample["labels"].shape == (0,)
    assert sample["masks"].shape == (0, 20, 30)


def test_filter_empty_drops_images_with_only_crowd_or_no_boxes(tmp_path):
    crowd = {"id": 2, "image_id": 3, "category_id": 2, "bbox": [0, 0, 5, 5], "iscrowd": 1}
    plain = {"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 2, 10, 5], "iscrowd": 0}
    path = write_tiny(tmp_path, annotations=[plain, crowd])
    assert len(CocoDataset(str(path))) == 2
    assert CocoDataset(str(path), filter_empty=True).image_ids == [7]


def test_relative_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    write_tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert CocoDataset("ann.json", images="img")[0]["image"].shape == (20, 30, 3)


def test_invalid_boxes_are_dropped_with_one_warning_counting_them(tmp_path):
    good = {"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 2, 10, 5]}
    bad = [
        {"id": 2, "image_id": 7, "category_id": 5},
        {"id": 3, "image_id": 7, "category_id": 5, "bbox": [1, 2, 3]},
        {"id": 4, "image_id": 7, "category_id": 5, "bbox": [1, 2, 0, 5]},
        {"id": 5, "image_id": 3, "category_id": 5, "bbox": [1, 2, 4, -1]},
        {"id": 6, "image_id": 3, "category_id": 5, "bbox": [1, "nan", 4, 4]},
    ]
    path = write_tiny(tmp_path, annotations=[good, *bad])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CocoDataset(str(path))
    messages = [str(w.message) for w in caught if issubclass(w.category, DetSDKWarning) and "invalid box" in str(w.message)]
    assert len(messages) == 1 and "5 annotation" in messages[0] and str(path) in messages[0]
    assert [len(dataset.get_annotations(i)["boxes"]) for i in range(2)] == [1, 0]


def test_masks_decode_polygon_uncompressed_and_compressed_rle(tmp_path):
    expected = np.zeros((20, 30), np.uint8)
    expected[4:10, 5:15] = 1
    compressed = mask_utils.encode(np.asfortranarray(expected))
    compressed["counts"] = compressed["counts"].decode()
    flat = expected.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()  # starts with a run of zeros
    segmentations = [
        [[5, 4, 15, 4, 15, 10, 5, 10]],
        {"size": [20, 30], "counts": counts},
        compressed,
    ]
    annotations = [
        {"id": i + 1, "image_id": 7, "category_id": 5, "bbox": [5, 4, 10, 6], "segmentation": s, "iscrowd": int(i > 0)}
        for i, s in enumerate(segmentations)
    ]
    masks = CocoDataset(str(write_tiny(tmp_path, annotations=annotations)), with_masks=True).get_annotations(0)["masks"]
    for mask in masks:
        assert np.array_equal(mask, expected)


# -- errors ---------------------------------------------------------------------------


def test_missing_annotation_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="annotation file not found: .*nope.json"):
        CocoDataset(str(tmp_path / "nope.json"))


def test_malformed_json_names_the_position(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text('{"images": [],\n "annotations": [}')
    with pytest.raises(DataError, match=r"ann.json: not valid JSON at line 2 column"):
        CocoDataset(str(path))


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_top_level_key_is_named(tmp_path, key):
    path = write_tiny(tmp_path)
    data = json.loads(path.read_text())
    del data[key]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"ann.json: missing key '{key}'"):
        CocoDataset(str(path))


def test_unknown_category_id_is_a_data_error(tmp_path):
    path = write_tiny(tmp_path, annotations=[{"id": 9, "image_id": 7, "category_id": 42, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(DataError, match="category_id 42"):
        CocoDataset(str(path))


def test_missing_image_file_names_it(tmp_path):
    path = write_tiny(tmp_path)
    (tmp_path / "img" / "a.png").unlink()
    with pytest.raises(DataError, match=r"image file not found: .*a\.png"):
        CocoDataset(str(path), images=str(tmp_path / "img"))[0]


def test_undecodable_image_names_it(tmp_path):
    path = write_tiny(tmp_path)
    (tmp_path / "img" / "b.png").write_bytes(b"this is not a png at all")
    dataset = CocoDataset(str(path), images=str(tmp_path / "img"))
    with pytest.raises(DataError, match=r"cannot decode image file .*b\.png"):
        dataset[1]


def test_builtin_plugin_registers_coco_dataset():
    from detsdk.plugins import get_registry

    assert get_registry().get("dataset", "coco").load() is CocoDataset
