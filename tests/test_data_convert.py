"""sdk data convert: VOC, WIDER FACE, middle format and recipe splits to COCO JSON, read back by the coco dataset."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from dataset_trees import random_middle, random_voc_year, random_widerface

from detsdk.builtin.data.coco import CocoDataset


@pytest.fixture(autouse=True)
def plugins(monkeypatch):
    """Load the VOC and WIDER FACE plugins explicitly (conftest loads none but the built-ins)."""
    from detsdk.plugins import reset_registry

    monkeypatch.setenv("DETSDK_LOAD_PLUGINS", "voc,widerface")
    reset_registry()


def sdk(*args):
    """Run ``sdk`` in this process: (exit code, output)."""
    from detsdk.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def assert_same_annotations(original, converted):
    assert len(original) == len(converted)
    for i in range(len(original)):
        a, b = original.get_annotations(i), converted.get_annotations(i)
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-4)
        assert [original.classes[k] for k in a["labels"]] == [converted.classes[k] for k in b["labels"]]
        assert a["iscrowd"].tolist() == b["iscrowd"].tolist()
        assert b["meta"]["ori_shape"] == a["meta"]["ori_shape"]


def test_voc_to_coco_round_trip_keeps_boxes_labels_and_difficult_as_crowd(tmp_path):
    from det_plugin_voc.dataset import VocDataset

    root = random_voc_year(tmp_path / "VOCdevkit" / "VOC2007", 6, seed=4)
    out = tmp_path / "voc07.json"
    code, output = sdk("data", "convert", "--from", "voc", "--param", f"root={root}", "--param", "split=trainval",
                       "--to", "coco", "--out", out, "--images", root / "JPEGImages")
    assert code == 0, output
    voc = VocDataset(str(root))
    crowd = sum(int(voc.get_annotations(i)["iscrowd"].sum()) for i in range(len(voc)))
    assert f"wrote {out}: 6 images" in output and f"({crowd} ignore regions as iscrowd = 1)" in output and crowd == 2
    coco = CocoDataset(str(out), images=str(root / "JPEGImages"))
    assert coco.classes == voc.classes
    assert_same_annotations(voc, coco)
    assert coco[0]["image"].shape == (64, 64, 3)  # file_name is relative to --images


def test_widerface_to_coco_reads_sizes_from_image_headers(tmp_path):
    from det_plugin_widerface.dataset import WiderFaceDataset

    ann_file, images = random_widerface(tmp_path, 5, seed=6, split="val")
    out = tmp_path / "wider.json"
    code, output = sdk("data", "convert", "--from", "widerface", "--param", f"ann_file={ann_file}",
                       "--param", f"images={images}", "--out", out)
    assert code == 0, output
    data = json.loads(out.read_text())
    assert [c["name"] for c in data["categories"]] == ["face"] and {i["width"] for i in data["images"]} == {64}
    assert_same_annotations(WiderFaceDataset(str(ann_file), str(images)), CocoDataset(str(out)))


def test_middle_with_a_class_subset_converts_the_renumbered_classes(tmp_path):
    ann = random_middle(tmp_path / "m", 4, seed=2, num_classes=3)
    out = tmp_path / "m.json"
    code, output = sdk("data", "convert", "--from", "middle", "--param", f"ann_file={ann}",
                       "--param", 'class_names=["a", "b", "c"]', "--param", 'classes=["c", "a"]', "--out", out)
    assert code == 0, output
    data = json.loads(out.read_text())
    assert data["categories"] == [{"id": 1, "name": "c"}, {"id": 2, "name": "a"}]
    assert data["annotations"][0]["iscrowd"] in (0, 1) and {a["category_id"] for a in data["annotations"]} <= {1, 2}


def test_a_recipe_split_converts_with_its_wrappers(tmp_path):
    from conftest import write_recipe

    devkit = tmp_path / "VOCdevkit"
    random_voc_year(devkit / "VOC2007", 3, seed=1)
    random_voc_year(devkit / "VOC2012", 2, seed=2)
    recipe = write_recipe(tmp_path / "r.toml", {"data": {"train": {"type": "repeat", "times": 3, "dataset": {
        "type": "concat", "datasets": [{"type": "voc", "root": str(devkit / "VOC2007")},
                                       {"type": "voc", "root": str(devkit / "VOC2012")}]}}}})
    out = tmp_path / "train.json"
    code, output = sdk("data", "convert", "--recipe", recipe, "--split", "train", "--out", out)
    assert code == 0, output
    assert "repeats its images 3 times; each is written once" in output
    assert len(json.loads(out.read_text())["images"]) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "vco"], "unknown dataset 'vco' (did you mean 'voc'?)"),
        (["--from", "voc", "--param", "rot=x"], "unknown parameter 'rot' for dataset 'voc'"),
        (["--from", "voc", "--param", "root=/nonexistent"], "VOC folder not found: /nonexistent"),
        ([], "give --from TYPE"),
    ],
)
def test_mistakes_exit_2_with_one_line(tmp_path, args, message):
    code, output = sdk("data", "convert", *args, "--out", tmp_path / "x.json")
    assert code == 2 and message in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_cityscapes_without_its_plugin_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "det_plugin_cityscapes.convert", None)  # import fails as if not installed
    code, output = sdk("data", "convert", "--from", "cityscapes", "--param", "root=x", "--out", tmp_path)
    assert code == 2 and "pip install det-plugin-cityscapes" in output
