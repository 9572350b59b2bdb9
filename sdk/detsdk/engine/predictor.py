"""Trained detectors for apps: ``load_detector(checkpoint).predict(image)``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np
import torch
from torch import nn

from detsdk.data.loader import apply_pipeline, collate
from detsdk.engine.evaluation import to_original_coordinates
from detsdk.engine.slicing import SliceSettings, slice_settings, sliced_detections
from detsdk.engine.tta import TTASettings, detect_with_tta, tta_settings
from detsdk.errors import CheckpointError, DataError

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


class Detector:
    """A detector with its inference pipeline and class names, ready to predict on images.

    >>> detector = load_detector("runs/quickstart/best.pt")   # doctest: +SKIP
    >>> result = detector.predict(image)                      # H×W×3 uint8 RGB or a path
    >>> result.boxes, result.scores, result.class_names
    """

    def __init__(self, model: nn.Module, transforms: list, classes: list[str], device: torch.device,
                 cat_ids: list[int] | None = None, tta: TTASettings | None = None,
                 slicing: SliceSettings | None = None):
        self.model = model.to(device).eval()
        self.transforms = transforms
        self.tta = tta
        self.slicing = slicing  # [eval] slice: the default of predict(slice=...)
        self.classes = list(classes)
        self.device = device
        self.cat_ids = cat_ids

    @torch.no_grad()
    def predict(self, images, score_thr: float = 0.0, slice: Any = None):  # noqa: A002  (SAHI's word)
        """Detect on one image (array or path) or a list of them; returns ``Detections`` or a list.

        ``slice``: sliced inference (``detsdk.engine.slicing``): a window size
        (``640``), a table like ``[eval] slice`` or ``SliceSettings``; by
        default the recipe's ``[eval] slice``, if any.
        """
        single = isinstance(images, (np.ndarray, str, Path))
        batch = [images] if single else list(images)
        arrays = []
        for item in batch:
            image = read_image(item) if isinstance(item, (str, Path)) else np.ascontiguousarray(item)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise DataError(f"expected an H×W×3 uint8 RGB image, got {image.dtype} array of shape {image.shape}")
            arrays.append(image)
        slicing = slice_settings(slice, where="slice") if slice is not None else self.slicing
        if slicing is not None:
            detections = [sliced_detections(self.detect, image, slicing) for image in arrays]
        else:
            detections = self.detect(arrays)
        results = []
        for detection in detections:
            keep = detection["scores"] >= score_thr
            results.append(
                Detections(
                    boxes=detection["boxes"][keep],
                    scores=detection["scores"][keep],
                    labels=detection["labels"][keep],
                    class_names=[self.classes[int(i)] for i in detection["labels"][keep]],
                    masks=detection["masks"][keep] if "masks" in detection else None,
                )
            )
        return results[0] if single else results

    def predict_video(self, path: str | Path, score_thr: float = 0.0, slice: Any = None):  # noqa: A002
        """Yield ``Detections`` for every frame of a video file, in order (see ``detsdk.engine.video``)."""
        from detsdk.engine.video import read_frames

        for frame in read_frames(path):
            yield self.predict(frame, score_thr=score_thr, slice=slice)

    @torch.no_grad()
    def detect(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Raw detections (numpy ``boxes``, ``scores``, ``labels``, ``masks``) in each RGB image's pixels."""
        samples = [{"image": image, "meta": {}} for image in images]
        if self.tta is not None:
            return detect_with_tta(self.model, samples, self.transforms, self.tta, self.device)
        tensors, targets, metas = collate([apply_pipeline(sample, self.transforms) for sample in samples])
        outputs = self.model(tensors.to(self.device), image_sizes=[t["image_size"] for t in targets])
        return [to_original_coordinates(output, meta) for output, meta in zip(outputs, metas)]


def inference_pipeline_spec(recipe: dict) -> list[dict]:
    """The test (else val) pipeline of a recipe, used to prepare images for prediction."""
    data = recipe.get("data", {})
    for split in ("test", "val"):
        if isinstance(data.get(split), dict) and "pipeline" in data[split]:
            return data[split]["pipeline"]
    return [{"type": "normalize"}, {"type": "pad", "size_divisor": 32}]


def load_detector(checkpoint: str | Path, device: str | None = None) -> Detector:
    """Rebuild the detector saved in a det-sdk checkpoint (its recipe, weights and class names).

    Loading never runs code: the checkpoint is read with ``weights_only=True``
    and its recipe is TOML.
    """
    from detsdk.engine.build import build_model
    from detsdk.engine.checkpoint import load_checkpoint
    from detsdk.engine.device import resolve_device
    from detsdk.plugins.build import build_component

    state = load_checkpoint(checkpoint)
    missing = [k for k in ("model", "recipe", "classes") if k not in state]
    if missing:
        raise CheckpointError(f"{checkpoint}: not a det-sdk checkpoint (no {', '.join(missing)})")
    recipe = tomllib.loads(state["recipe"])
    classes = list(state["classes"])
    model = build_model(recipe["model"], len(classes), for_inference=True)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the recipe's model ({str(exc).splitlines()[0]})") from None
    transforms = [
        build_component("transform", step, where=f"pipeline[{i}]")
        for i, step in enumerate(inference_pipeline_spec(recipe))
    ]
    tta = tta_settings(recipe.get("eval", {}).get("tta"))
    slicing = slice_settings(recipe.get("eval", {}).get("slice"))
    return Detector(model, transforms, classes, resolve_device(device or "auto"), state.get("cat_ids"), tta=tta,
                    slicing=slicing)
