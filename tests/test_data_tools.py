"""``sdk data check``, ``browse`` and ``stats`` on tiny datasets written by the tests."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_recipe

from detsdk.cli.main import cli
from detsdk.data.browse import displayable
from detsdk.data.check import check_dataset
from detsdk.errors import DataError

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]


def write_image(path, seed: int, size=(32, 40)) -> None:
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8))


def coco_tree(root, broken: bool):
    """A COCO file and its images; ``broken`` adds one of each problem ``sdk data check`` must find."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    images, annotations = [], []

    def add(name: str, boxes: list, category: int = 1, write=True, seed=None):
        image_id = len(images) + 1
        if write:
            write_image(images_dir / name, seed if seed is not None else image_id)
        images.append({"id": image_id, "file_name": name, "height": 32, "width": 40})
        for box in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": box, "area": box[2] * box[3], "iscrowd": 0})

    add("a.png", [[2, 2, 10, 10], [20, 5, 8, 12]])
    add("b.png", [[5, 5, 20, 20]], category=2)
    if broken:
        add("missing.png", [[1, 1, 5, 5]], write=False)
        add("undecodable.png", [[1, 1, 5, 5]], write=False)
        (images_dir / "undecodable.png").write_bytes(b"this is not a PNG")
        add("outside.png", [[30, 20, 25, 5]])  # x2 = 55 > width 40
        add("unknown_class.png", [[1, 1, 5, 5]], category=7)
        add("copy_of_a.png", [], seed=1)  # the same pixels as a.png
    ann_file = root / "annotations.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    recipe = {"data": {"train": {"type": "coco", "ann_file": str(ann_file), "images": str(images_dir),
                                 "pipeline": [{"type": "resize", "scale": [64, 48]}, {"type": "normalize"},
                                              {"type": "pad", "size_divisor": 32}]}}}
    return write_recipe(root / "recipe.toml", recipe)


def sdk(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_check_lists_each_problem_with_its_file_and_exits_2(tmp_path):
    result = sdk("data", "check", coco_tree(tmp_path, broken=True))
    assert result.exit_code == 2
    lines = result.output.splitlines()
    expected = {
        "missing.png": "image file not found",
        "undecodable.png": "cannot decode the image",
        "outside.png": "annotation 6: box [30, 20, 55, 25] is outside the 40x32 image",
        "unknown_class.png": "annotation 7: category_id 7 is not in categories (1, 2)",
        "copy_of_a.png": "same pixels as",
    }
    for name, message in expected.items():
        at = next(i for i, line in enumerate(lines) if line.endswith(name))
        assert message in lines[at + 1], (name, lines[at + 1])
    start = lines.index("5 problems in 5 files:")
    files = [line.rsplit("/", 1)[-1] for line in lines[start + 1 :] if not line.startswith("  - ")]
    assert files == list(expected)  # the clean images a.png and b.png are not listed


def test_check_on_a_clean_dataset_exits_0_with_a_per_class_summary(tmp_path):
    result = sdk("data", "check", coco_tree(tmp_path, broken=False))
    assert result.exit_code == 0, result.output
    assert "no problems found" in result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[2:5]}
    assert rows == {"cat": ["1", "2", "0"], "dog": ["1", "1", "0"], "total": ["2", "3", "0"]}


class InMemoryDataset:
    """A dataset whose items go wrong in the ways a plugin's dataset could."""

    classes = ["a", "b"]

    def __init__(self):
        image = np.zeros((20, 30, 3), np.uint8)
        self.items = [
            {"image": image, "boxes": [[1, 1, 5, 5]], "labels": [0], "meta": {"file": "ok.png"}},
            {"image": image + 1, "boxes": [[1, 1, 5, 5], [1, 1, 5, 5]], "labels": [1, 1], "meta": {"file": "dup.png"}},
            {"image": image + 2, "boxes": [[4, 4, 2, 9], [0, 0, np.inf, 3]], "labels": [0, 0], "meta": {"file": "bad.png"}},
            {"image": image + 3, "boxes": [[1, 1, 5, 5]], "labels": [2], "meta": {"file": "label.png"}},
            {"image": image + 4, "boxes": [], "labels": [], "meta": {"file": "ok.png"}},
            None,
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        if self.items[index] is None:
            raise OSError("disk on fire")
        item = self.items[index]
        return {**item, "boxes": np.array(item["boxes"], np.float32).reshape(-1, 4),
                "labels": np.array(item["labels"], np.int64)}


def test_check_dataset_catches_each_item_error_and_lists_every_problem():
    report = check_dataset(InMemoryDataset())
    assert report.by_file() == {
        "dup.png": ["box 1: duplicates box 0 (same class and box)"],
        "bad.png": ["box 0: box [4, 4, 2, 9] has no area (needs x2 > x1 and y2 > y1)",
                    "box 1: box [0, 0, inf, 3] is not finite"],
        "label.png": ["box 0: label 2 is not one of the 2 declared classes"],
        "ok.png": ["listed more than once (items 0 and 4)"],
        "item 5": ["OSError: disk on fire"],
    }
    assert (report.boxes[0], report.boxes[1], report.images_with[1]) == (1, 1, 1)


class DeclaringDataset(InMemoryDataset):
    """Annotations (``get_annotations``) declare each image's size; item 1's image cannot be read."""

    def get_annotations(self, index):
        boxes = [[1, 1, 5, 5]] if index == 0 else [[10, 10, 50, 15]]
        return {"boxes": np.array(boxes, np.float32), "labels": np.array([0]),
                "meta": {"file": f"{index}.png", "ori_shape": (25, 30)}}

    def __len__(self):
        return 2

    def __getitem__(self, index):
        if index == 1:
            raise DataError("cannot decode image file 1.png")
        return {**self.get_annotations(index), "image": np.zeros((20, 30, 3), np.uint8)}


def test_check_dataset_compares_declared_sizes_and_checks_boxes_of_unreadable_images():
    assert check_dataset(DeclaringDataset()).by_file() == {
        "0.png": ["image is 30x20 (w x h) but its annotations declare 30x25"],
        "1.png": ["cannot decode image file 1.png",
                  "box 0: box [10, 10, 50, 15] is outside the 30x25 image (w x h)"],
    }


def test_browse_writes_the_requested_number_of_drawn_images(tmp_path):
    result = sdk("data", "browse", coco_tree(tmp_path, broken=False), "--out", tmp_path / "browse", "--limit", 1)
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "browse").iterdir())
    assert [f.name for f in files] == ["00000_a.png"]
    drawn = cv2.imread(str(files[0]))
    assert drawn is not None and min(drawn.shape[:2]) >= 384  # enlarged for drawing, like predictions.png


def test_browse_undoes_normalize_for_display():
    image = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    from detsdk.builtin.transforms.photometric import Normalize

    assert np.array_equal(displayable(Normalize()({"image": image})), image)


def test_stats_prints_counts_and_writes_histograms(tmp_path):
    out = tmp_path / "stats"
    result = sdk("data", "stats", coco_tree(tmp_path, broken=False), "--out", out)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:3] for line in result.output.splitlines() if line.startswith(("cat", "dog"))}
    assert rows == {"cat": ["2", "66.7%"], "dog": ["1", "33.3%"]}
    assert "2 images (0 without boxes), 3 boxes" in result.output
    for name in ("class_counts.png", "box_sizes.png", "aspect_ratios.png"):
        assert cv2.imread(str(out / name)) is not None


@pytest.mark.parametrize("command", ["check", "stats"])
def test_a_split_the_recipe_lacks_is_one_line_and_exit_2(tmp_path, command):
    args = ["--out", tmp_path / "o"] if command == "stats" else []
    result = CliRunner().invoke(cli, ["data", command, str(coco_tree(tmp_path, broken=False)), "--split", "val",
                                      *map(str, args)])
    assert result.exit_code == 2
    assert "no data.val table (the recipe has train)" in result.output


def test_check_of_a_repeat_dataset_checks_one_copy_without_calling_repeats_duplicates(tmp_path):
    recipe = {"data": {"train": {"type": "repeat", "times": 3,
                                 "dataset": {"type": "shapes", "num_images": 3, "image_size": 32}}}}
    result = sdk("data", "check", write_recipe(tmp_path / "repeat.toml", recipe))
    assert result.exit_code == 0, result.output
    assert "3 images" in result.output.splitlines()[0]


def labelme_coco(root):
    """A labelme-exported COCO file: its '_background_' category (id 0) has no annotation."""
    root.mkdir(parents=True, exist_ok=True)
    write_image(root / "a.png", 1)
    ann_file = root / "annotations.json"
    ann_file.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "height": 32, "width": 40}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "area": 100, "iscrowd": 0}],
        "categories": [{"id": 0, "name": "_background_"}, *CATEGORIES[:1]],
    }))
    return ann_file


def test_check_says_what_num_classes_auto_counts_and_which_classes_have_no_annotations(tmp_path):
    ann_file = labelme_coco(tmp_path)
    recipe = write_recipe(tmp_path / "recipe.toml",
                          {"data": {"train": {"type": "coco", "ann_file": str(ann_file), "images": str(tmp_path)}}})

    result = sdk("data", "check", recipe)

    assert result.exit_code == 0, result.output
    assert "num_classes = \"auto\" will count 2 classes; 1 of them have no annotations: '_background_'" in result.output


def test_the_coco_loader_warns_about_a_category_without_annotations(tmp_path):
    from detsdk.builtin.data.coco import CocoDataset
    from detsdk.errors import DetSDKWarning

    with pytest.warns(DetSDKWarning, match=r"1 of 2 categories have no annotations: '_background_' \(id 0\)"):
        dataset = CocoDataset(str(labelme_coco(tmp_path)), images=str(tmp_path))
    assert dataset.classes == ["_background_", "cat"]
