"""Built-in transforms: boxes and masks stay on their pixels, meta records what happened."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import painted_sample

from detsdk.builtin.transforms.geometric import Pad, RandomFlip, Resize
from detsdk.builtin.transforms.photometric import Normalize, PhotometricDistortion
from detsdk.errors import DataError, RecipeError

# Three solid rectangles on black, x1 y1 x2 y2 in pixel edges, on a 60x80 (h x w) image.
RECTANGLES = [((5, 5, 25, 20), (255, 0, 0)), ((40, 10, 70, 50), (0, 255, 0)), ((10, 30, 30, 55), (0, 0, 255))]


def rectangles_sample(height: int = 60, width: int = 80) -> dict:
    return painted_sample(RECTANGLES, height, width, file="rectangles.png")


def assert_aligned(sample: dict) -> None:
    """Each box (and mask) covers exactly the pixels of its colour, give or take one pixel."""
    image, boxes, masks = sample["image"], sample["boxes"], sample["masks"]
    assert masks.shape[1:] == image.shape[:2]
    for (_, colour), box, mask in zip(RECTANGLES, boxes, masks):
        is_colour = np.all(image == colour, axis=2)
        x1, y1, x2, y2 = box
        inside = is_colour[math.ceil(y1) + 1 : math.floor(y2) - 1, math.ceil(x1) + 1 : math.floor(x2) - 1]
        assert inside.size > 0 and inside.all(), f"box {box} is not all {colour}"
        outside = is_colour.copy()
        outside[max(math.floor(y1) - 1, 0) : math.ceil(y2) + 1, max(math.floor(x1) - 1, 0) : math.ceil(x2) + 1] = False
        assert not outside.any(), f"{colour} pixels outside box {box}"
        core = mask.astype(bool)
        core[1:-1, 1:-1] &= core[:-2, 1:-1] & core[2:, 1:-1] & core[1:-1, :-2] & core[1:-1, 2:]  # 1-px erosion
        assert is_colour[core[1:-1, 1:-1].nonzero()[0] + 1, core[1:-1, 1:-1].nonzero()[1] + 1].all()
        ys, xs = mask.nonzero()
        assert np.allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1.0)


@pytest.mark.parametrize(
    "transform",
    [
        Resize(scale=[100, 50], keep_ratio=True),
        Resize(scale=[150, 90], keep_ratio=True),
        Resize(scale=[90, 45], keep_ratio=False),
        Resize(scale=[[40, 30], [160, 120]], keep_ratio=True, multiscale_mode="range"),
        Resize(scale=[[50, 110], [120, 40]], keep_ratio=False, multiscale_mode="value"),
        RandomFlip(p=1.0, direction="horizontal"),
        RandomFlip(p=1.0, direction="vertical"),
        Pad(size_divisor=32),
        Pad(size=[70, 100]),
    ],
    ids=repr,
)
def test_geometric_transforms_keep_boxes_and_masks_on_their_pixels(transform):
    np.random.seed(0)
    for _ in range(3):
        assert_aligned(transform(rectangles_sample()))


def test_resize_keep_ratio_fits_image_inside_long_and_short_edge():
    sample = Resize(scale=[1333, 800])({"image": np.zeros((480, 640, 3), np.uint8)})
    assert sample["image"].shape == (800, 1067, 3)
    assert sample["meta"]["img_shape"] == (800, 1067)


def test_resize_records_actual_scale_factor_after_rounding():
    sample = Resize(scale=[100, 50])(rectangles_sample())
    assert sample["meta"]["img_shape"] == (50, 67)
    assert sample["meta"]["scale_factor"] == pytest.approx((67 / 80, 50 / 60))


def test_resize_without_keep_ratio_gives_width_then_height_exactly():
    sample = Resize(scale=[90, 45], keep_ratio=False)(rectangles_sample())
    assert sample["image"].shape[:2] == (45, 90)
    assert sample["meta"]["scale_factor"] == pytest.approx((90 / 80, 45 / 60))


def test_resize_range_draws_each_edge_within_bounds():
    np.random.seed(0)
    resize = Resize(scale=[[40, 30], [60, 50]], keep_ratio=False, multiscale_mode="range")
    shapes = {resize(rectangles_sample())["image"].shape[:2] for _ in range(20)}
    assert len(shapes) > 1
    assert all(30 <= h <= 50 and 40 <= w <= 60 for h, w in shapes)


def test_resize_value_mode_picks_one_of_the_listed_scales():
    np.random.seed(0)
    resize = Resize(scale=[[40, 30], [60, 50], [80, 70]], keep_ratio=False, multiscale_mode="value")
    shapes = {resize(rectangles_sample())["image"].shape[:2] for _ in range(30)}
    assert shapes == {(30, 40), (50, 60), (70, 80)}


def test_second_resize_multiplies_into_scale_factor():
    sample = Resize(scale=[160, 120], keep_ratio=False)(rectangles_sample())
    sample = Resize(scale=[40, 30], keep_ratio=False)(sample)
    assert sample["meta"]["scale_factor"] == pytest.approx((0.5, 0.5))


def test_flip_records_decision_and_direction():
    flipped = RandomFlip(p=1.0, direction="vertical")(rectangles_sample())
    kept = RandomFlip(p=0.0)(rectangles_sample())
    assert (flipped["meta"]["flip"], flipped["meta"]["flip_direction"]) == (True, "vertical")
    assert (kept["meta"]["flip"], kept["meta"]["flip_direction"]) == (False, None)
    assert np.array_equal(kept["image"], rectangles_sample()["image"])


def test_flip_returns_contiguous_arrays():
    sample = RandomFlip(p=1.0)(rectangles_sample())
    assert sample["image"].flags["C_CONTIGUOUS"] and sample["masks"].flags["C_CONTIGUOUS"]


def test_pad_to_divisor_records_pad_shape_and_fills_bottom_right():
    sample = Pad(size_divisor=32, pad_value=7)(rectangles_sample())
    assert sample["image"].shape[:2] == (64, 96)
    assert sample["meta"]["pad_shape"] == (64, 96)
    assert sample["meta"]["img_shape"] == (60, 80)
    assert (sample["image"][60:] == 7).all() and (sample["image"][:, 80:] == 7).all()
    assert sample["masks"].shape == (3, 64, 96) and not sample["masks"][:, 60:].any()


def test_pad_keeps_img_shape_recorded_by_resize():
    sample = Pad(size_divisor=32)(Resize(scale=[100, 50])(rectangles_sample()))
    assert sample["meta"]["img_shape"] == (50, 67)
    assert sample["meta"]["pad_shape"] == (64, 96)


def test_pad_to_size_smaller_than_image_is_an_error():
    with pytest.raises(DataError, match="larger than size"):
        Pad(size=[32, 32])(rectangles_sample())


def test_pad_works_on_normalized_float_images():
    sample = Pad(size_divisor=32)(Normalize()(rectangles_sample()))
    assert sample["image"].dtype == np.float32 and sample["image"].shape == (64, 96, 3)


ALL_TRANSFORMS = [
    Resize(scale=[100, 50]),
    RandomFlip(p=1.0),
    PhotometricDistortion(),
    Normalize(),
    Pad(size_divisor=32),
]


def test_pipeline_runs_on_a_bare_image_without_annotations():
    np.random.seed(0)
    sample = {"image": np.full((60, 80, 3), 128, np.uint8)}
    for transform in ALL_TRANSFORMS:
        sample = transform(sample)
    assert set(sample) == {"image", "meta"}
    assert sample["image"].shape == (64, 96, 3) and sample["image"].dtype == np.float32
    assert sample["meta"]["img_shape"] == (50, 67) and sample["meta"]["pad_shape"] == (64, 96)
    assert sample["meta"]["flip"] is True


def test_pipeline_runs_on_a_sample_with_zero_objects():
    np.random.seed(0)
    sample = {
        "image": np.zeros((60, 80, 3), np.uint8),
        "boxes": np.zeros((0, 4), np.float32),
        "labels": np.zeros(0, np.int64),
        "masks": np.zeros((0, 60, 80), np.uint8),
        "meta": {},
    }
    for transform in ALL_TRANSFORMS:
        sample = transform(sample)
    assert sample["boxes"].shape == (0, 4) and sample["boxes"].dtype == np.float32
    assert sample["masks"].shape == (0, 64, 96)


def test_transforms_leave_the_input_sample_unchanged():
    np.random.seed(0)
    original = rectangles_sample()
    sample = rectangles_sample()
    for transform in ALL_TRANSFORMS:
        transform(sample)
    assert sample["meta"] == original["meta"]
    for key in ("image", "boxes", "masks"):
        assert np.array_equal(sample[key], original[key])


def test_photometric_distortion_returns_uint8_rgb_of_same_shape_and_changes_colours():
    np.random.seed(1)
    image = np.random.randint(0, 256, (20, 30, 3), dtype=np.uint8)
    outputs = [PhotometricDistortion()({"image": image})["image"] for _ in range(5)]
    assert all(o.dtype == np.uint8 and o.shape == image.shape for o in outputs)
    assert any(not np.array_equal(o, image) for o in outputs)


def test_photometric_distortion_with_zero_ranges_is_identity():
    image = np.random.randint(0, 256, (20, 30, 3), dtype=np.uint8)
    distortion = PhotometricDistortion(0, [1, 1], [1, 1], 0)
    for _ in range(5):
        assert np.abs(distortion({"image": image})["image"].astype(int) - image).max() <= 1


def test_photometric_distortion_rejects_a_normalized_image():
    with pytest.raises(RecipeError, match="before 'normalize'"):
        PhotometricDistortion()(Normalize()(rectangles_sample()))


def test_normalize_gives_float32_and_records_how_to_undo_it():
    sample = Normalize(mean=[10, 20, 30], std=[2, 4, 5])(rectangles_sample())
    assert sample["image"].dtype == np.float32
    stats = sample["meta"]["normalize"]
    restored = sample["image"] * np.array(stats["std"]) + np.array(stats["mean"])
    assert np.allclose(restored, rectangles_sample()["image"], atol=1e-3)


@pytest.mark.parametrize(
    "factory, kwargs, parameter",
    [
        (Resize, {"scale": [1333]}, "scale"),
        (Resize, {"scale": [[1333, 800], [1000, 600], [800, 500]]}, "scale"),
        (Resize, {"multiscale_mode": "ranged"}, "multiscale_mode"),
        (RandomFlip, {"p": 1.5}, "p"),
        (RandomFlip, {"direction": "diagonal"}, "direction"),
        (Pad, {"size_divisor": -1}, "size_divisor"),
        (Pad, {"size": [800]}, "size"),
        (PhotometricDistortion, {"contrast_range": [1.5, 0.5]}, "contrast_range"),
        (PhotometricDistortion, {"hue_delta": 400}, "hue_delta"),
        (Normalize, {"std": [1, 0, 1]}, "std"),
        (Normalize, {"mean": [1, 2]}, "mean"),
    ],
)
def test_bad_parameter_raises_recipe_error_naming_it(factory, kwargs, parameter):
    with pytest.raises(RecipeError, match=parameter):
        factory(**kwargs)


def test_builtin_plugin_registers_these_transforms():
    from detsdk.plugins import get_registry

    registry = get_registry()
    expected = {"resize": Resize, "random_flip": RandomFlip, "pad": Pad}
    expected.update({"photometric_distortion": PhotometricDistortion, "normalize": Normalize})
    assert {name: registry.get("transform", name).load() for name in expected} == expected
