"""The cityscapes plugin's dataset and converter on a tiny tree in the official layout.

``make_cityscapes_tree`` writes two cities of 64x128 frames: polygons as
``*_gtFine_polygons.json``, rendered to ``instanceIds``/``labelIds`` PNGs by
cityscapesscripts' own ``json2instanceImg`` / ``json2labelImg`` renderers, and
images painted in each label's Cityscapes colour. The other cityscapes tests import it.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from detsdk.errors import DataError

HEIGHT, WIDTH = 64, 128
# Four non-overlapping column slots, one object each: boxes are exactly the drawn rectangles.
SLOTS = [(2, 27), (34, 59), (66, 91), (98, 123)]
FRAMES = {
    "train": {"aachen": 2, "bochum": 2},
    "val": {"aachen": 2, "bochum": 1},
}
OBJECTS = ["car", "person", "cargroup", "bicycle", "rider", "car", "truck"]


def make_cityscapes_tree(root: Path, frames: dict = FRAMES, seed: int = 0) -> dict:
    """Write the tree; return ``{image path: [(label, (x1, y1, x2, y2), crowd), ...]}`` for the 8 classes."""
    from cityscapesscripts.helpers.labels import name2label

    rng = np.random.default_rng(seed)
    expected = {}
    for split, cities in frames.items():
        for city, count in cities.items():
            image_dir = root / "leftImg8bit" / split / city
            gt_dir = root / "gtFine" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            for frame in range(count):
                name = f"{city}_{frame:06d}_{19 + frame:06d}"
                # Stuff, then void (ignored in evaluation), then the instances.
                objects = [
                    {"label": label, "polygon": [[0, top], [WIDTH - 1, top], [WIDTH - 1, bottom], [0, bottom]]}
                    for label, top, bottom in (("sky", 0, 9), ("road", 40, HEIGHT - 1), ("ego vehicle", 60, HEIGHT - 1))
                ]
                instances = []
                for slot_x1, slot_x2 in SLOTS:
                    label = OBJECTS[int(rng.integers(len(OBJECTS)))]
                    width, height = int(rng.integers(12, slot_x2 - slot_x1)), int(rng.integers(12, 30))
                    x1 = int(rng.integers(slot_x1, slot_x2 - width + 1))
                    y1 = int(rng.integers(12, 58 - height))
                    x2, y2 = x1 + width - 1, y1 + height - 1
                    objects.append({"label": label, "polygon": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]})
                    crowd = label.endswith("group")
                    instances.append((label[: -len("group")] if crowd else label, (x1, y1, x2 + 1, y2 + 1), crowd))
                polygons = gt_dir / f"{name}_gtFine_polygons.json"
                polygons.write_text(json.dumps({"imgHeight": HEIGHT, "imgWidth": WIDTH, "objects": objects}))
                _render(polygons, gt_dir / f"{name}_gtFine_instanceIds.png", gt_dir / f"{name}_gtFine_labelIds.png")
                image_path = image_dir / f"{name}_leftImg8bit.png"
                cv2.imwrite(str(image_path), _paint(gt_dir / f"{name}_gtFine_labelIds.png", name2label, rng))
                expected[str(image_path)] = instances
    return expected


def _render(polygons: Path, instance_ids: Path, label_ids: Path) -> None:
    """``json2instanceImg`` and ``json2labelImg``, saving 16/8-bit PNGs (their own save fails with Pillow 13)."""
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import createLabelImage

    annotation = Annotation()
    annotation.fromJsonFile(str(polygons))
    createInstanceImage(annotation, "ids").convert("I;16").save(instance_ids)
    createLabelImage(annotation, "ids").save(label_ids)


def _paint(label_ids: Path, name2label, rng) -> np.ndarray:
    """An image in each pixel's Cityscapes label colour plus noise (BGR, for cv2.imwrite)."""
    ids = cv2.imread(str(label_ids), cv2.IMREAD_UNCHANGED)
    colours = np.zeros((256, 3), np.uint8)
    for label in name2label.values():
        if 0 <= label.id < 256:
            colours[label.id] = label.color
    image = colours[ids].astype(np.int16) + rng.integers(-10, 11, (*ids.shape, 3))
    return np.clip(image, 0, 255).astype(np.uint8)[..., ::-1]


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
