"""Mosaic, MixUp, random resize and HSV jitter: boxes stay on their objects; mixing is seeded per sample."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import painted_sample
from test_augmentations import BACKGROUND, OBJECTS, assert_objects_on_their_pixels, objects_sample

from detsdk.builtin.transforms.mixup import MixUp
from detsdk.builtin.transforms.mosaic import Mosaic
from detsdk.builtin.transforms.random_resize import RandomResize
from detsdk.builtin.transforms.yolox_hsv import YOLOXHSVRandomAug
from detsdk.data.loader import apply_pipeline
from detsdk.errors import RecipeError

TRIALS = 20


class Painted:
    """A dataset of the painted objects sample, objects shuffled per index (so samples differ)."""

    def __init__(self, size: int = 6):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        order = np.random.RandomState(index).permutation(len(OBJECTS))[: 2 + index % 3]
        sample = painted_sample([OBJECTS[i] for i in sorted(order)], 96, 128, BACKGROUND)
        sample["labels"] = np.array(sorted(order), np.int64)
        sample["areas"] = np.ones(len(order), np.float32)
        return sample


def assert_boxes_cover_their_colours(sample: dict, colours=None) -> None:
    """Each box's inside (1 px in) is its label's colour, and every pixel of a colour lies in a box of that label.

    Unlike ``assert_objects_on_their_pixels`` one colour may appear several times (a mosaic can
    hold the same sample twice). Masks, when present, span their boxes.
    """
    colours = colours or {label: colour for label, (_, colour) in enumerate(OBJECTS)}
    image, boxes, labels = sample["image"], sample["boxes"], sample["labels"]
    height, width = image.shape[:2]
    assert boxes.shape == (len(labels), 4) and len(sample["iscrowd"]) == len(labels)
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes >= 0).all() and (boxes[:, 0::2] <= width).all() and (boxes[:, 1::2] <= height).all()
    for label, colour in colours.items():
        near = np.abs(image.astype(int) - np.array(colour)).max(axis=2) <= 2
        covered = np.zeros_like(near)
        for box in boxes[labels == label]:
            x1, y1, x2, y2 = box
            top, left = int(np.ceil(y1)) + 1, int(np.ceil(x1)) + 1
            inner = near[top : max(int(np.floor(y2)) - 1, top), left : max(int(np.floor(x2)) - 1, left)]
            assert inner.all(), f"label {label}: box {box} holds pixels of another colour"
            covered[max(int(y1) - 1, 0) : int(np.ceil(y2)) + 1, max(int(x1) - 1, 0) : int(np.ceil(x2)) + 1] = True
        assert not (near & ~covered).any(), f"label {label}: its colour shows outside its boxes"
    for box, mask in zip(boxes, sample.get("masks", [])):
        ys, xs = np.asarray(mask).nonzero()
        assert np.allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1.0)


@pytest.mark.parametrize("max_cached_images", [0, 5])
def test_mosaic_keeps_every_box_on_its_painted_object(max_cached_images):
    np.random.seed(0)
    mosaic = Mosaic(img_scale=[64, 48], max_cached_images=max_cached_images)
    dataset = Painted()
    mixed = 0
    for index in range(TRIALS):
        out = apply_pipeline(dataset[index % len(dataset)], [mosaic], source=dataset)
        assert "mix_samples" not in out
        if out["meta"].get("mosaic"):
            mixed += 1
            assert out["image"].shape == (96, 128, 3)
            assert_boxes_cover_their_colours(out)
    assert mixed >= TRIALS - 5  # the cached variant passes the first samples through


def test_mixup_keeps_every_box_on_its_painted_object_when_objects_do_not_overlap():
    # Only one of the two blended samples paints a pixel where the other is background, so the
    # blended colour is (object + background) / 2: check against those colours.
    np.random.seed(1)
    left = painted_sample([((4, 4, 40, 40), (250, 10, 10))], 96, 128, (0, 0, 0))
    right = painted_sample([((80, 50, 120, 90), (10, 250, 10))], 96, 128, (0, 0, 0))
    right["labels"] = np.array([1])
    left.pop("masks"), right.pop("masks")  # mixup mixes boxes only; a sample with masks passes unchanged
    mixup = MixUp(img_scale=[128, 96], ratio_range=[1.0, 1.0], flip_ratio=1.0, pad_val=0)
    left["mix_samples"] = [right]
    out = mixup(left)
    assert out["labels"].tolist() == [0, 1] and "mix_samples" not in out
    for box, colour in zip(out["boxes"], [(125, 5, 5), (5, 125, 5)]):
        x1, y1, x2, y2 = box.astype(int)
        assert (np.abs(out["image"][y1:y2, x1:x2].astype(int) - colour) <= 1).all()
    np.testing.assert_allclose(out["boxes"], [[4, 4, 40, 40], [80, 50, 120, 90]])


def test_mixup_flips_and_jitters_the_other_sample_with_its_boxes():
    np.random.seed(2)
    dataset = Painted()
    mixup = MixUp(img_scale=[128, 96], ratio_range=[0.6, 1.4], flip_ratio=0.5, pad_val=0)
    for index in range(TRIALS):
        base = painted_sample([], 96, 128, (0, 0, 0))  # a black image: only the partner shows, halved
        base.pop("masks")
        base["mix_samples"] = [dataset[index % len(dataset)]]
        out = mixup(base)
        doubled = dict(out, image=np.clip(out["image"].astype(int) * 2, 0, 255).astype(np.uint8))
        assert out["meta"].get("mixup") and len(out["labels"])
        for box, label in zip(doubled["boxes"], doubled["labels"]):
            x1, y1, x2, y2 = box
            top, left = int(np.ceil(y1)) + 1, int(np.ceil(x1)) + 1
            inner = doubled["image"][top : max(int(y2) - 1, top), left : max(int(x2) - 1, left)]
            assert (np.abs(inner.astype(int) - np.array(OBJECTS[label][1]) // 2 * 2).max(axis=-1) <= 4).all()


def test_random_resize_scales_within_its_ratio_range():
    np.random.seed(3)
    resize = RandomResize(scale=[128, 128], ratio_range=[0.5, 2.0])
    sizes = set()
    for _ in range(10):
        out = resize(objects_sample())
        long_edge = max(out["image"].shape[:2])
        assert 64 <= long_edge <= 256
        sizes.add(long_edge)
        assert_objects_on_their_pixels(out)
    assert len(sizes) > 3


def test_yolox_hsv_changes_colours_not_boxes():
    np.random.seed(4)
    sample = objects_sample()
    outs = [YOLOXHSVRandomAug()(sample) for _ in range(5)]
    assert all(np.array_equal(o["boxes"], sample["boxes"]) for o in outs)
    assert any(not np.array_equal(o["image"], sample["image"]) for o in outs)


def test_mixing_transform_outside_a_dataset_is_a_recipe_error():
    with pytest.raises(RecipeError, match="needs a dataset"):
        apply_pipeline(objects_sample(), [Mosaic(img_scale=[64, 64])])
    with pytest.raises(RecipeError, match="max_cached_images"):
        Mosaic(max_cached_images=2)
