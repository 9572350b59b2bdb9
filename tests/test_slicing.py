"""Sliced inference: small objects in a large image are found only by detecting on full-resolution windows."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from detsdk.builtin.evaluation import CocoMetric
from detsdk.engine.predictor import Detector
from detsdk.engine.slicing import SliceSettings, evaluate_sliced, slice_settings, slice_windows, sliced_detections
from detsdk.errors import RecipeError
from detsdk.plugins.build import build_component


class BlobDetector(nn.Module):
    """Finds bright squares whose sides measure ``min_side``..``max_side`` pixels *in its input tensor*.

    So what it finds depends on the scale it sees objects at, like a real
    detector's anchors: shrink the image and small objects drop out. A cut
    square (a window edge through it) scores lower than a whole one.
    """

    def __init__(self, min_side: int = 8, max_side: int = 24):
        super().__init__()
        self.min_side, self.max_side = min_side, max_side
        self.anchor = nn.Parameter(torch.zeros(1))  # a device to live on

    def forward(self, images, image_sizes=None):
        outputs = []
        for image, (height, width) in zip(images, image_sizes):
            bright = (image[:, :height, :width].mean(0) > 0).cpu().numpy().astype(np.uint8)
            count, _, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=4)
            boxes, scores = [], []
            for x, y, w, h, _ in stats[1:count]:
                if self.min_side <= min(w, h) and max(w, h) <= self.max_side:
                    boxes.append([x, y, x + w, y + h])
                    scores.append(0.9 * min(w, h) / max(w, h))
            outputs.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                            "scores": torch.tensor(scores, dtype=torch.float32),
                            "labels": torch.zeros(len(boxes), dtype=torch.int64)})
        return outputs


SMALL = [(30, 40), (100, 100), (200, 60), (390, 120), (250, 250), (470, 300), (60, 420), (300, 470), (118, 200)]


def large_image(small=SMALL, side=12, big=None):
    """512×512 dark image with bright ``side``-pixel squares at ``small`` (x, y) corners, and one big square."""
    image = np.zeros((512, 512, 3), np.uint8)
    for x, y in small:
        image[y : y + side, x : x + side] = 255
    if big is not None:
        x, y, size = big
        image[y : y + size, x : x + size] = 255
    return image


def blob_detector() -> Detector:
    transforms = [build_component("transform", spec, where="pipeline")
                  for spec in ({"type": "resize", "scale": [128, 128], "keep_ratio": True},
                               {"type": "normalize"}, {"type": "pad", "size_divisor": 32})]
    return Detector(BlobDetector(), transforms, ["blob"], torch.device("cpu"))


def test_windows_cover_the_image_and_the_last_ones_end_at_the_border():
    assert slice_windows(100, 250, (100, 100), 0.2) == [(0, 0, 100, 100), (80, 0, 180, 100), (150, 0, 250, 100)]
    assert slice_windows(50, 60, (100, 100), 0.2) == [(0, 0, 60, 50)]  # smaller than a window: the image


def test_small_objects_are_found_only_with_slicing():
    detector = blob_detector()
    image = large_image()

    whole = detector.predict(image)
    sliced = detector.predict(image, slice=SliceSettings(size=(128, 128), overlap=0.2, full_image=False))

    assert len(whole) == 0  # resized to 128 px, each 12 px square is 3 px: too small to see
    expected = sorted([x, y, x + 12, y + 12] for x, y in SMALL)
    assert sorted(np.round(sliced.boxes).astype(int).tolist()) == expected  # each once: overlaps merged by NMS
    assert np.allclose(sliced.scores, 0.9)  # the whole square won over the cut ones


def test_full_image_adds_what_only_the_whole_image_shows():
    detector = blob_detector()
    image = large_image(big=(300, 300, 80))  # 80 px: 20 px at the detector's 128 px view, too big in a window

    with_full = detector.predict(image, slice={"size": [128, 128], "overlap": 0.2, "full_image": True})
    without = detector.predict(image, slice={"size": [128, 128], "overlap": 0.2, "full_image": False})

    assert len(with_full) == len(SMALL) + 1
    big = [box for box in with_full.boxes if box[2] - box[0] > 60]
    assert len(big) == 1 and np.allclose(big[0], [300, 300, 380, 380], atol=5)
    assert all(box[2] - box[0] < 20 for box in without.boxes)


def test_slicing_works_on_any_detect_callable():
    calls = []

    def detect(images):
        calls.append([im.shape[:2] for im in images])
        return [{"boxes": np.array([[1.0, 2.0, 5.0, 6.0]]), "scores": np.array([0.5]), "labels": np.array([0])}
                for _ in images]

    merged = sliced_detections(detect, np.zeros((100, 250, 3), np.uint8),
                               SliceSettings(size=(100, 100), overlap=0.2, batch_size=2))

    assert calls == [[(100, 100), (100, 100)], [(100, 100)], [(100, 250)]]  # two batches of windows, the whole image
    assert sorted(merged["boxes"][:, 0].tolist()) == [1.0, 81.0, 151.0]  # shifted into the image; the full one merged


def test_sliced_evaluation_scores_the_small_objects():
    detector = blob_detector()
    boxes = np.array([[x, y, x + 12, y + 12] for x, y in SMALL], np.float32)
    dataset = [{"image": large_image(), "boxes": boxes, "labels": np.zeros(len(SMALL), np.int64),
                "meta": {"image_id": 1}}]
    metric = CocoMetric()
    metric.bind_dataset(type("Blobs", (), {"classes": ["blob"]})())

    metrics = evaluate_sliced(detector.detect, dataset, metric, SliceSettings(size=(128, 128)))

    assert metrics["bbox_mAP"] == pytest.approx(1.0)


def test_slice_settings_errors_name_the_key():
    assert slice_settings({}) is None and slice_settings(640).size == (640, 640)
    with pytest.raises(RecipeError, match="eval.slice: unknown key 'overlpa'.*did you mean 'overlap'"):
        slice_settings({"size": 640, "overlpa": 0.2})
    with pytest.raises(RecipeError, match=r"eval.slice.overlap = 1.5: expected a fraction in \[0, 1\)"):
        slice_settings({"size": [640, 640], "overlap": 1.5})
    with pytest.raises(RecipeError, match="'size' is missing"):
        slice_settings({"overlap": 0.2})


def test_sdk_eval_with_eval_slice_from_the_recipe(tmp_path):
    from conftest import tiny_recipe, write_recipe
    from test_cli import assert_user_error, sdk

    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe(tmp_path / "run"))
    assert sdk("run", recipe, "--set", "train.iters=1", "--set", "runtime.plot_samples=0")[0] == 0

    code, output = sdk("eval", recipe, "--checkpoint", tmp_path / "run" / "last.pt",
                       "--set", "eval.slice={ size = 48, overlap = 0.25 }")

    assert code == 0, output
    assert "bbox_mAP" in output
    assert_user_error(*sdk("eval", recipe, "--checkpoint", tmp_path / "run" / "last.pt",
                           "--set", "eval.slice={ sise = 48 }"), "eval.slice", "unknown key 'sise'")
