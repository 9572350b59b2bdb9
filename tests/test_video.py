"""Video: per-frame detections from Detector.predict_video, and sdk predict on an mp4 (same frames and rate)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_recipe, write_recipe
from test_cli import assert_user_error, sdk
from test_slicing import blob_detector

from detsdk.engine.video import read_frames, video_info, write_video
from detsdk.errors import DataError

FRAMES, FPS = 9, 12.0


def moving_square_clip(path, size=(96, 128)):
    """An mp4v clip: a 16 px bright square moving right by 6 px a frame on a dark background."""
    height, width = size
    frames = []
    for index in range(FRAMES):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[40:56, 10 + 6 * index : 26 + 6 * index] = 255
        frames.append(frame)
    write_video(iter(frames), path, FPS)
    return path


def test_predict_video_yields_each_frames_detections_in_order(tmp_path):
    clip = moving_square_clip(tmp_path / "clip.mp4")
    detector = blob_detector()  # sees squares of 8..24 px once its pipeline resized the frame to 128 px

    results = list(detector.predict_video(clip))

    assert len(results) == FRAMES
    assert all(len(r) == 1 for r in results)
    lefts = [float(r.boxes[0, 0]) for r in results]
    assert lefts == pytest.approx([10 + 6 * i for i in range(FRAMES)], abs=2)  # the square, frame by frame


def test_write_video_keeps_frame_count_rate_and_size(tmp_path):
    clip = moving_square_clip(tmp_path / "clip.mp4")
    info = video_info(clip)
    assert (info.frames, info.fps, info.width, info.height) == (FRAMES, FPS, 128, 96)
    assert len(list(read_frames(clip))) == FRAMES
    assert not list(tmp_path.glob(".*partial*"))


def test_a_missing_video_is_named(tmp_path):
    with pytest.raises(DataError, match="video not found"):
        list(read_frames(tmp_path / "none.mp4"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A det-sdk checkpoint of the tiny recipe after one iteration."""
    root = tmp_path_factory.mktemp("trained")
    recipe = write_recipe(root / "r.toml", tiny_recipe(root / "run"))
    assert sdk("run", recipe, "--set", "train.iters=1", "--set", "runtime.plot_samples=0")[0] == 0
    return root / "run" / "last.pt"


def test_sdk_predict_on_a_video_writes_the_drawn_video_and_one_jsonl_line_per_frame(tmp_path, checkpoint):
    clip = moving_square_clip(tmp_path / "clip.mp4")

    code, output = sdk("predict", checkpoint, clip, "--out", tmp_path / "out", "--score-thr", "0", "--slice", "96")

    assert code == 0, output
    written = video_info(tmp_path / "out" / "clip.mp4")
    assert (written.frames, written.fps, written.width, written.height) == (FRAMES, FPS, 128, 96)
    lines = (tmp_path / "out" / "detections.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(FRAMES))
    assert all({"bbox", "score", "label", "class"} <= d.keys() for line in lines for d in json.loads(line)["detections"])


def test_sdk_predict_on_an_unreadable_video_is_one_line(tmp_path, checkpoint):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")

    assert_user_error(*sdk("predict", checkpoint, broken, "--out", tmp_path / "out"),
                      "broken.mp4", "cannot open as a video")
    assert not (tmp_path / "out" / "detections.jsonl").exists()
