"""The YOLO format: a small Ultralytics tree (data.yaml, images/, labels/), bad lines, and sdk data convert both ways."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from detsdk.builtin.data.coco import CocoDataset
from detsdk.builtin.data.yolo import YoloDataset, label_file
from detsdk.errors import DataError

DATA_YAML = """\
# Ultralytics style: names as a mapping, splits relative to path
path: .
train: images/train
val: val.txt
names:
  0: circle
  1: square
"""


def yolo_tree(root, bad_line: str | None = None):
    """Two train images (one with a box and a polygon, one without a label file) and one val image."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for path, size in [("images/train/a.jpg", (40, 80)), ("images/train/b.png", (30, 30)), ("images/val/c.jpg", (50, 100))]:
        cv2.imwrite(str(root / path), np.full(size + (3,), 90, np.uint8))
    lines = ["0 0.5 0.5 0.25 0.5", "", "1 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4"]
    if bad_line is not None:
        lines.append(bad_line)
    (root / "labels" / "train" / "a.txt").write_text("\n".join(lines) + "\n")
    (root / "labels" / "val" / "c.txt").write_text("1 0.5 0.5 1.0 1.0\n")
    (root / "val.txt").write_text("images/val/c.jpg\n")
    (root / "data.yaml").write_text(DATA_YAML)
    return root / "data.yaml"


def test_yolo_reads_normalised_boxes_polygons_and_images_without_labels(tmp_path):
    dataset = YoloDataset(str(yolo_tree(tmp_path)), split="train", with_masks=True)
    assert dataset.classes == ["circle", "square"] and len(dataset) == 2
    sample = dataset[0]  # a.jpg: 80 wide, 40 high
    assert sample["image"].shape == (40, 80, 3)
    np.testing.assert_allclose(sample["boxes"], [[30, 10, 50, 30], [8, 4, 24, 16]], atol=1e-4)
    assert sample["labels"].tolist() == [0, 1] and not sample["iscrowd"].any()
    assert sample["masks"].shape == (2, 40, 80) and sample["masks"][1, 10, 16] == 1 and sample["masks"][1, 30, 60] == 0
    empty = dataset[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    val = YoloDataset(str(tmp_path / "data.yaml"), split="val")
    np.testing.assert_allclose(val.get_annotations(0)["boxes"], [[0, 0, 100, 50]])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2", "expected .class cx cy w h. or a polygon .*got 4 values"),
        ("2 0.5 0.5 0.2 0.2", "class 2 is not an integer in 0..1"),
        ("0 0.5 0.5 1.7 0.2", "coordinates must be normalised to .0, 1."),
        ("one 0.5 0.5 0.2 0.2", "expected numbers"),
        ("0 0.5 0.5 0 0.2", "width and height must be > 0"),
    ],
)
def test_malformed_label_lines_name_their_file_and_line(tmp_path, line, message):
    data_yaml = yolo_tree(tmp_path, bad_line=line)
    with pytest.raises(DataError, match=rf"labels/train/a\.txt:4: {message}"):
        YoloDataset(str(data_yaml))


def test_skip_drops_malformed_lines_with_a_count(tmp_path):
    data_yaml = yolo_tree(tmp_path, bad_line="0 0.5")
    with pytest.warns(UserWarning, match="skipped 1 malformed label lines, the first: .*a.txt:4"):
        dataset = YoloDataset(str(data_yaml), on_error="skip")
    assert len(dataset.get_annotations(0)["labels"]) == 2


def test_label_path_replaces_the_last_images_folder():
    assert str(label_file(__import__("pathlib").Path("/d/images/x/images/train/a.jpg"))) == "/d/images/x/labels/train/a.txt"


def _sdk(*args):
    from detsdk.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def test_sdk_data_convert_from_yolo_to_coco_and_back_to_yolo(tmp_path):
    data_yaml = yolo_tree(tmp_path / "tree")
    code, out = _sdk("data", "convert", "--from", "yolo", "--param", f'data_yaml="{data_yaml}"', "--out", tmp_path / "train.json")
    assert code == 0, out
    coco = json.loads((tmp_path / "train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["circle", "square"] and len(coco["annotations"]) == 2
    back = tmp_path / "back"
    code, out = _sdk("data", "convert", "--from", "coco", "--param", f'ann_file="{tmp_path / "train.json"}"',
                     "--to", "yolo", "--split", "train", "--out", back)
    assert code == 0, out
    assert "2 images, 2 boxes" in out
    again = YoloDataset(str(back / "data.yaml"), split="train")
    assert again.classes == ["circle", "square"]
    original = YoloDataset(str(data_yaml)).get_annotations(0)
    np.testing.assert_allclose(again.get_annotations(0)["boxes"], original["boxes"], atol=0.01)
    assert CocoDataset(str(tmp_path / "train.json")).classes == ["circle", "square"]


def test_bad_yolo_data_exits_2_with_one_line(tmp_path):
    data_yaml = yolo_tree(tmp_path / "tree", bad_line="0 0.5 0.5 0.2")
    code, out = _sdk("data", "convert", "--from", "yolo", "--param", f'data_yaml="{data_yaml}"', "--out", tmp_path / "x.json")
    assert code == 2 and "a.txt:4" in out and "Traceback" not in out
    assert not (tmp_path / "x.json").exists()
