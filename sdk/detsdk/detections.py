"""What a detector returns for one image, and the image files it reads; free of torch, for every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np

from detsdk.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@attrs.define
class Detections:
    """One image's detections in its original pixels: ``boxes`` x1 y1 x2 y2, ``scores``, 0-based ``labels``."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def to_coco(self, image_id: Any, cat_ids: list[int] | None = None) -> list[dict]:
        """COCO result entries (``bbox`` as x y w h, ``category_id`` from ``cat_ids`` or label + 1)."""
        entries = []
        for box, score, label in zip(self.boxes, self.scores, self.labels):
            x1, y1, x2, y2 = (float(v) for v in box)
            category = cat_ids[int(label)] if cat_ids else int(label) + 1
            entries.append(
                {"image_id": image_id, "category_id": category, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)}
            )
        return entries


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to H×W×3 uint8 RGB; a clear error names a file that does not decode."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{path}: cannot decode image (not an image file, or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_files(paths: list[str | Path]) -> list[Path]:
    """Expand folders into their image files (sorted); files are kept as given."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(path)
    return found


def input_images(images) -> tuple[list[np.ndarray], bool]:
    """``(arrays, single)``: one image (array or path) or a list of them as H×W×3 uint8 RGB arrays."""
    single = isinstance(images, (np.ndarray, str, Path))
    arrays = []
    for item in [images] if single else list(images):
        image = read_image(item) if isinstance(item, (str, Path)) else np.ascontiguousarray(item)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"expected an H×W×3 uint8 RGB image, got {image.dtype} array of shape {image.shape}")
        arrays.append(image)
    return arrays, single


def to_detections(detection: dict[str, np.ndarray], classes: list[str], score_thr: float = 0.0) -> Detections:
    """``Detections`` from one image's arrays in original pixels, keeping scores of at least ``score_thr``."""
    keep = detection["scores"] >= score_thr
    return Detections(
        boxes=detection["boxes"][keep],
        scores=detection["scores"][keep],
        labels=detection["labels"][keep],
        class_names=[classes[int(i)] for i in detection["labels"][keep]],
        masks=detection["masks"][keep] if "masks" in detection else None,
    )


class PredictsImages:
    """``predict`` and ``predict_video`` for any backend, over its ``detect(images) -> [detection dicts]``.

    A subclass sets ``classes`` and ``slicing`` (the default of ``predict(slice=...)``) and
    implements ``detect``: raw numpy ``boxes``, ``scores``, ``labels`` (and ``masks``) in each
    RGB image's own pixels.
    """

    classes: list[str]
    slicing: Any = None

    def detect(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Raw detections for each image, in its pixels."""
        raise NotImplementedError

    def predict(self, images, score_thr: float = 0.0, slice: Any = None):  # noqa: A002  (SAHI's word)
        """Detect on one image (array or path) or a list of them; returns ``Detections`` or a list.

        ``slice``: sliced inference (``detsdk.engine.slicing``): a window size
        (``640``), a table like ``[eval] slice`` or ``SliceSettings``; by
        default ``self.slicing`` (a checkpoint's ``[eval] slice``), if any.
        """
        arrays, single = input_images(images)
        slicing = self.slicing
        if slice is not None:
            from detsdk.recipe.slice_options import slice_settings

            slicing = slice_settings(slice, where="slice")
        if slicing is not None:
            from detsdk.engine.slicing import sliced_detections  # windows merge with torchvision's NMS

            detections = [sliced_detections(self.detect, image, slicing) for image in arrays]
        else:
            detections = self.detect(arrays)
        results = [to_detections(detection, self.classes, score_thr) for detection in detections]
        return results[0] if single else results

    def predict_video(self, path: str | Path, score_thr: float = 0.0, slice: Any = None):  # noqa: A002
        """Yield ``Detections`` for every frame of a video file, in order (see ``detsdk.engine.video``)."""
        from detsdk.engine.video import read_frames

        for frame in read_frames(path):
            yield self.predict(frame, score_thr=score_thr, slice=slice)
