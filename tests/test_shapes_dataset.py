"""ShapesDataset: deterministic synthetic COCO files, generated once, read back like COCO."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from detsdk.builtin.data import shapes
from detsdk.builtin.data.shapes import ShapesDataset
from detsdk.errors import RecipeError

SMALL = {"num_images": 6, "image_size": 64, "max_objects": 3}


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_shapes_exposes_the_coco_dataset_interface(tmp_path):
    dataset = ShapesDataset(cache_dir=str(tmp_path), **SMALL)
    assert len(dataset) == 6
    assert dataset.classes == ["circle", "square", "triangle"] and dataset.cat_ids == [1, 2, 3]
    assert len(dataset.coco_gt["images"]) == 6
    sample = dataset[0]
    assert sample["image"].shape == (64, 64, 3) and sample["image"].dtype == np.uint8
    assert len(sample["boxes"]) >= 1 and set(sample["labels"].tolist()) <= {0, 1, 2}
    assert "image" not in dataset.get_annotations(0)


def test_same_parameters_write_identical_files(tmp_path):
    first = ShapesDataset(cache_dir=str(tmp_path / "a"), **SMALL).root
    second = ShapesDataset(cache_dir=str(tmp_path / "b"), **SMALL).root
    assert first.name == second.name
    digests = file_digests(first)
    assert "annotations.json" in digests and len(digests) == 7
    assert digests == file_digests(second)


def test_second_construction_reuses_the_cache(tmp_path, monkeypatch):
    first = ShapesDataset(cache_dir=str(tmp_path), **SMALL)

    def must_not_generate(*args, **kwargs):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(shapes, "write_shapes_coco", must_not_generate)
    assert ShapesDataset(cache_dir=str(tmp_path), **SMALL).root == first.root


def test_train_and_val_share_no_image(tmp_path):
    train = ShapesDataset(split="train", cache_dir=str(tmp_path), **SMALL).root
    val = ShapesDataset(split="val", cache_dir=str(tmp_path), **SMALL).root
    images = lambda root: {d for name, d in file_digests(root).items() if name.endswith(".png")}  # noqa: E731
    assert train != val and not images(train) & images(val)


def test_different_parameters_use_different_folders(tmp_path):
    roots = {
        ShapesDataset(cache_dir=str(tmp_path), **{**SMALL, **change}).root
        for change in ({}, {"seed": 1}, {"num_images": 5}, {"image_size": 48}, {"max_objects": 2})
    }
    assert len(roots) == 5


def test_split_default_sizes_apply_when_num_images_is_zero(tmp_path):
    assert len(ShapesDataset(split="val", num_images=0, image_size=32, cache_dir=str(tmp_path))) == 100


def test_environment_variable_picks_the_cache_when_cache_dir_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("DETSDK_CACHE", str(tmp_path))
    assert ShapesDataset(**SMALL).root.parent == tmp_path / "shapes"


def test_interrupted_generation_leaves_no_cache_behind(tmp_path, monkeypatch):
    real_writer = shapes.write_shapes_coco

    def interrupted(folder, *args):
        (folder / "images").mkdir()
        (folder / "images" / "000000.png").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(shapes, "write_shapes_coco", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ShapesDataset(cache_dir=str(tmp_path), **SMALL)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(shapes, "write_shapes_coco", real_writer)
    assert len(ShapesDataset(cache_dir=str(tmp_path), **SMALL)) == 6


def test_boxes_are_the_tight_bounds_of_each_object_mask(tmp_path):
    dataset = ShapesDataset(cache_dir=str(tmp_path), with_masks=True, **SMALL)
    for i in range(len(dataset)):
        sample = dataset[i]
        for box, mask in zip(sample["boxes"], sample["masks"]):
            ys, xs = mask.nonzero()
            assert np.allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1.0)


def test_objects_are_one_eighth_to_half_the_image_and_solid_coloured(tmp_path):
    dataset = ShapesDataset(cache_dir=str(tmp_path), with_masks=True, **SMALL)
    for i in range(len(dataset)):
        sample = dataset[i]
        for box, mask in zip(sample["boxes"], sample["masks"]):
            assert 6 <= max(box[2] - box[0], box[3] - box[1]) <= 36
            inner = mask.astype(bool)
            inner[1:-1, 1:-1] &= inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
            assert len(np.unique(sample["image"][inner], axis=0)) == 1


def test_bad_split_is_a_recipe_error_with_suggestion(tmp_path):
    with pytest.raises(RecipeError, match="did you mean 'val'"):
        ShapesDataset(split="vall", cache_dir=str(tmp_path))


def test_builtin_plugin_registers_shapes_dataset():
    from detsdk.plugins import get_registry

    assert get_registry().get("dataset", "shapes").load() is ShapesDataset
