"""Augmentations keep every object on its own pixels: boxes and masks follow the image."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import painted_sample

from detsdk.builtin.transforms.crop import MinIoURandomCrop, RandomCrop, keep_instances
from detsdk.builtin.transforms.cutout import CutOut
from detsdk.builtin.transforms.expand import Expand
from detsdk.builtin.transforms.geometric import Pad, RandomFlip, Resize
from detsdk.errors import RecipeError
from detsdk.plugins.build import build_component
from detsdk.recipe import load_recipe, validate_recipe

BACKGROUND = (40, 40, 40)
HOLE = (7, 200, 9)  # cutout's fill: no object or background has it
# Solid rectangles (x1 y1 x2 y2 in pixel edges) on a 96x128 (h x w) image, one colour per label.
OBJECTS = [((6, 8, 40, 30), (255, 0, 0)), ((50, 10, 110, 60), (0, 255, 255)),
           ((10, 45, 45, 90), (0, 0, 255)), ((70, 70, 120, 92), (255, 255, 0))]
TRIALS = 25


def objects_sample() -> dict:
    sample = painted_sample(OBJECTS, 96, 128, BACKGROUND, file="objects.png")
    sample["areas"] = np.array([(b[2] - b[0]) * (b[3] - b[1]) for b, _ in OBJECTS], np.float32)
    return sample


def assert_objects_on_their_pixels(sample: dict, holes: bool = False) -> int:
    """Each box's inner region (1 px in from its edges) and each eroded mask is its object's colour.

    Also: no pixel of a kept object's colour lies outside its box (1 px margin), and the mask's
    extent matches the box. With ``holes``, cutout's fill colour may stand in for the object's.
    Returns how many pixels were checked.
    """
    image, boxes, labels, masks = sample["image"], sample["boxes"], sample["labels"], sample["masks"]
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
    assert masks.shape == (len(labels),) + image.shape[:2]
    assert len(sample["iscrowd"]) == len(sample["areas"]) == len(labels)
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    height, width = image.shape[:2]
    assert (boxes >= 0).all() and (boxes[:, 0::2] <= width).all() and (boxes[:, 1::2] <= height).all()
    checked = 0
    for box, label, mask in zip(boxes, labels, masks):
        colour = np.array(OBJECTS[label][1])
        near = np.abs(image.astype(int) - colour).max(axis=2) <= 2
        allowed = near | np.all(image == HOLE, axis=2) if holes else near
        x1, y1, x2, y2 = box
        inner = allowed[math.ceil(y1) + 1 : math.floor(y2) - 1, math.ceil(x1) + 1 : math.floor(x2) - 1]
        assert inner.all(), f"label {label}: box {box} holds pixels of another colour"
        checked += inner.size
        outside = near.copy()
        outside[max(math.floor(y1) - 1, 0) : math.ceil(y2) + 1, max(math.floor(x1) - 1, 0) : math.ceil(x2) + 1] = False
        assert not outside.any(), f"label {label}: its colour shows outside box {box}"
        core = mask.astype(bool)
        core[1:-1, 1:-1] &= core[:-2, 1:-1] & core[2:, 1:-1] & core[1:-1, :-2] & core[1:-1, 2:]
        core[[0, -1]], core[:, [0, -1]] = False, False
        assert allowed[core].all(), f"label {label}: mask covers pixels of another colour"
        checked += int(core.sum())
        ys, xs = mask.nonzero()
        if len(ys):
            assert np.allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1.0)
    return checked


PIPELINES = {
    "random_crop absolute": [RandomCrop(crop_size=[60, 70])],
    "random_crop absolute_range": [RandomCrop(crop_size=[30, 90], crop_type="absolute_range")],
    "random_crop relative": [RandomCrop(crop_size=[0.5, 0.6], crop_type="relative")],
    "random_crop relative_range + flip": [RandomCrop(crop_size=[0.3, 0.3], crop_type="relative_range"),
                                          RandomFlip(p=0.5)],
    "random_crop negative allowed": [RandomCrop(crop_size=[20, 20], allow_negative_crop=True)],
    "min_iou_random_crop": [MinIoURandomCrop()],
    "min_iou_random_crop strict": [MinIoURandomCrop(min_ious=[0.7, 0.9], min_crop_size=0.5)],
    "expand": [Expand(prob=1.0)],
    "expand + min_iou crop + resize": [Expand(ratio_range=[1, 3]), MinIoURandomCrop(),
                                       Resize(scale=[150, 100], keep_ratio=False)],
    "resize list": [Resize(scale=[[200, 150], [100, 80], [64, 48]], multiscale_mode="value")],
    "resize range": [Resize(scale=[[200, 150], [100, 80]], multiscale_mode="range"), Pad(size_divisor=32)],
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_augmentation_keeps_boxes_and_masks_on_their_objects(name):
    np.random.seed(0)
    checked = 0
    for _ in range(TRIALS):
        sample = objects_sample()
        for transform in PIPELINES[name]:
            sample = transform(sample)
        checked += assert_objects_on_their_pixels(sample)
    assert checked > 1000  # the trials did look at objects


@pytest.mark.parametrize(
    "cutout",
    [CutOut(n_holes=[1, 4], cutout_shape=[[10, 10], [20, 6]], fill=list(HOLE)),
     CutOut(n_holes=3, cutout_ratio=[0.2, 0.3], fill=list(HOLE))],
    ids=repr,
)
def test_cutout_paints_holes_and_leaves_annotations_alone(cutout):
    np.random.seed(0)
    painted = 0
    for _ in range(TRIALS):
        original = objects_sample()
        sample = cutout(original)
        assert_objects_on_their_pixels(sample, holes=True)
        for key in ("boxes", "labels", "masks"):
            assert np.array_equal(sample[key], original[key])
        changed = np.any(sample["image"] != original["image"], axis=2)
        assert np.all(sample["image"][changed] == HOLE)
        painted += int(changed.sum())
    assert painted > 0


def test_random_crop_drops_objects_outside_the_window_with_their_labels_and_masks():
    np.random.seed(0)
    # A 30x40 window in the top-left corner region can only hold the first object.
    sample = RandomCrop(crop_size=[1.0, 0.3], crop_type="relative")(objects_sample())
    x1, y1, x2, y2 = sample["meta"]["crop"]
    assert sample["meta"]["img_shape"] == (y2 - y1, x2 - x1) == sample["image"].shape[:2]
    kept = {int(label) for label in sample["labels"]}
    for label, ((ox1, oy1, ox2, oy2), _) in enumerate(OBJECTS):
        assert (label in kept) == (ox1 < x2 and ox2 > x1 and oy1 < y2 and oy2 > y1)


def test_random_crop_without_objects_in_reach_returns_the_sample_uncropped():
    np.random.seed(0)
    sample = objects_sample()
    sample["boxes"] = np.array([[0, 0, 1, 1]], np.float32)  # a single tiny object in a corner
    for key in ("labels", "iscrowd", "areas", "masks"):
        sample[key] = sample[key][:1]
    result = RandomCrop(crop_size=[10, 10], max_trials=3)(sample)
    assert result is sample


def test_min_iou_crop_keeps_every_kept_box_overlapping_the_window_enough():
    np.random.seed(1)
    crop = MinIoURandomCrop(min_ious=[0.4], min_crop_size=0.3)
    one_object = keep_instances(objects_sample(), np.array([False, True, False, False]))
    cropped = 0
    for _ in range(20):
        sample = crop(one_object)
        if "crop" not in sample["meta"]:
            continue
        cropped += 1
        x1, y1, x2, y2 = sample["meta"]["crop"]
        window_area = (x2 - x1) * (y2 - y1)
        for (ox1, oy1, ox2, oy2), _ in OBJECTS[1:2]:  # every original box met the threshold with the window
            inter = max(0, min(ox2, x2) - max(ox1, x1)) * max(0, min(oy2, y2) - max(oy1, y1))
            union = window_area + (ox2 - ox1) * (oy2 - oy1) - inter
            assert inter / union >= 0.4 - 1e-6
    assert cropped > 0


def test_expand_places_the_image_on_a_mean_canvas_at_its_recorded_offset():
    np.random.seed(0)
    original = objects_sample()
    sample = Expand(mean=[10, 20, 30], ratio_range=[2, 2], prob=1.0)(original)
    left, top, ratio = sample["meta"]["expand"]
    assert sample["image"].shape[:2] == (192, 256) and ratio == 2
    assert np.array_equal(sample["image"][top : top + 96, left : left + 128], original["image"])
    assert np.all(sample["image"][:top] == [10, 20, 30]) and np.all(sample["image"][:, :left] == [10, 20, 30])
    assert np.array_equal(sample["boxes"], original["boxes"] + [left, top, left, top])


def test_expand_with_prob_zero_does_nothing():
    sample = objects_sample()
    assert Expand(prob=0.0)(sample) is sample


def test_transforms_work_without_boxes_and_with_zero_boxes():
    np.random.seed(0)
    bare = {"image": objects_sample()["image"], "meta": {}}
    empty = {**objects_sample(), "boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
             "masks": np.zeros((0, 96, 128), np.uint8), "iscrowd": np.zeros(0, bool), "areas": np.zeros(0, np.float32)}
    for transform in (RandomCrop(crop_size=[50, 50]), MinIoURandomCrop(), Expand(prob=1.0),
                      CutOut(cutout_shape=[5, 5])):
        assert transform(bare)["image"].ndim == 3
        result = transform(empty)
        assert result["boxes"].shape == (0, 4) and result["masks"].shape[1:] == result["image"].shape[:2]


def test_multiscale_resize_from_a_recipe_picks_each_listed_scale_or_draws_within_the_range():
    np.random.seed(0)
    listed = build_component("transform", {"type": "resize", "scale": [[64, 48], [128, 96]],
                                           "keep_ratio": False, "multiscale_mode": "value"})
    ranged = build_component("transform", {"type": "resize", "scale": [[64, 48], [128, 96]], "keep_ratio": False})
    image = {"image": np.zeros((30, 40, 3), np.uint8)}
    assert {listed(image)["image"].shape[:2] for _ in range(20)} == {(48, 64), (96, 128)}
    shapes = {ranged(image)["image"].shape[:2] for _ in range(40)}
    assert len(shapes) > 10 and all(48 <= h <= 96 and 64 <= w <= 128 for h, w in shapes)


@pytest.mark.parametrize(
    ("factory", "params", "key"),
    [
        (RandomCrop, {"crop_type": "relatve"}, "crop_type"),
        (RandomCrop, {"crop_size": [0.5, 2.0], "crop_type": "relative"}, "crop_size"),
        (RandomCrop, {"crop_size": [90, 30], "crop_type": "absolute_range"}, "crop_size"),
        (MinIoURandomCrop, {"min_ious": [1.5]}, "min_ious"),
        (MinIoURandomCrop, {"min_crop_size": 0}, "min_crop_size"),
        (Expand, {"ratio_range": [0.5, 2]}, "ratio_range"),
        (Expand, {"prob": 2}, "prob"),
        (CutOut, {}, "cutout_shape"),
        (CutOut, {"cutout_shape": [4, 4], "n_holes": [3, 1]}, "n_holes"),
        (CutOut, {"cutout_ratio": [0.5, 1.5]}, "cutout_ratio"),
    ],
)
def test_bad_parameters_are_named_in_the_error(factory, params, key):
    with pytest.raises(RecipeError, match=key):
        factory(**params)


def test_recipe_refuses_train_only_transforms_outside_data_train():
    recipe = load_recipe({
        "data": {
            "train": {"type": "shapes", "pipeline": [{"type": "random_crop", "crop_size": [64, 64]}]},
            "val": {"type": "shapes", "pipeline": [{"type": "expand"}, {"type": "normalize"}]},
        }
    })
    with pytest.raises(RecipeError, match=r"data\.val\.pipeline\[0\].*'expand' is train-only"):
        validate_recipe(recipe)


def test_a_recipe_trains_with_every_new_augmentation(tmp_path):
    from conftest import tiny_recipe

    from detsdk.engine import Engine

    recipe = tiny_recipe(tmp_path, train={"iters": 2, "optimizer": {"type": "sgd", "lr": 0.001}})
    recipe["data"]["train"]["pipeline"] = [
        {"type": "expand", "ratio_range": [1, 2]},
        {"type": "min_iou_random_crop"},
        {"type": "random_crop", "crop_size": [0.8, 0.8], "crop_type": "relative_range"},
        {"type": "resize", "scale": [[64, 48], [96, 72]], "multiscale_mode": "value"},
        {"type": "cutout", "n_holes": [0, 2], "cutout_shape": [8, 8]},
        {"type": "normalize"},
        {"type": "pad", "size_divisor": 32},
    ]
    recipe["runtime"]["plot_samples"] = 0
    engine = Engine.from_recipe(recipe)
    engine.fit()
    assert engine.iteration == 2
