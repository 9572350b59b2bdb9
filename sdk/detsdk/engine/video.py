"""Video in, per-frame detections out: OpenCV's ``VideoCapture`` and ``VideoWriter`` (mp4v).

    >>> for detections in detector.predict_video("clip.mp4"):   # doctest: +SKIP
    ...     print(len(detections))

``sdk predict MODEL clip.mp4 --out DIR`` writes ``DIR/clip.mp4`` (every
frame drawn, the same frame count, size and frame rate) and one line of
``DIR/detections.jsonl`` per frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import cv2
import numpy as np

from detsdk.errors import DataError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"}


@attrs.frozen
class VideoInfo:
    """What the container says: frame count (OpenCV's estimate), frames per second, frame size."""

    frames: int
    fps: float
    width: int
    height: int


def is_video(path: str | Path) -> bool:
    """True for a file whose suffix is a video container's."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise DataError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: cannot open as a video (unknown container or codec for OpenCV)")
    return capture


def video_info(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and size of a video file."""
    capture = _open(Path(path))
    try:
        return VideoInfo(
            frames=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            fps=float(capture.get(cv2.CAP_PROP_FPS)),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Every frame of a video as H×W×3 uint8 RGB, in order."""
    capture = _open(Path(path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def write_video(frames: Iterator[np.ndarray], path: Path, fps: float) -> int:
    """Write RGB frames to ``path`` (mp4v) at ``fps``; the file appears only when complete. Returns the count."""
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    writer = None
    count = 0
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                if not writer.isOpened():
                    raise DataError(f"{path}: OpenCV cannot write an mp4v video here")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            count += 1
    except BaseException:
        if writer is not None:
            writer.release()
        partial.unlink(missing_ok=True)
        raise
    if writer is None:
        raise DataError(f"{path}: the video had no frames to write")
    writer.release()
    os.replace(partial, path)
    return count


def annotate_video(path: Path, out_dir: Path, predict: Callable[[np.ndarray], object],
                   draw: Callable[[np.ndarray, object], np.ndarray], record: Callable[[int, object], None]) -> int:
    """Detect on each frame of ``path``, ``record(frame index, detections)`` and write the drawn frames
    to ``out_dir/<name>.mp4`` at the input's frame rate. Returns the number of frames."""
    info = video_info(path)
    if info.fps <= 0:
        raise DataError(f"{path}: the video does not say its frame rate")

    def drawn() -> Iterator[np.ndarray]:
        for index, frame in enumerate(read_frames(path)):
            detections = predict(frame)
            record(index, detections)
            yield draw(frame, detections)

    return write_video(drawn(), out_dir / f"{path.stem}.mp4", info.fps)
