"""``sdk data browse``: samples after the pipeline with their annotations drawn (MMDetection's browse_dataset).

What the model is trained on is what gets drawn: random transforms are
applied (seeded), ``normalize`` is undone for display, padding is kept.

    >>> browse(pipeline_dataset, Path("browse"), limit=8)   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detsdk.data.loader import PipelineDataset
from detsdk.data.draw import draw_detections


def displayable(sample: dict) -> np.ndarray:
    """The sample's image as H×W×3 uint8 RGB, undoing ``normalize`` when ``meta`` records it."""
    image = np.asarray(sample["image"])
    statistics = sample.get("meta", {}).get("normalize")
    if statistics:
        image = image * np.asarray(statistics["std"], np.float32) + np.asarray(statistics["mean"], np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8) if image.dtype != np.uint8 else image


def browse(dataset: PipelineDataset, out_dir: Path, limit: int = 20) -> list[Path]:
    """Draw the first ``limit`` samples of ``dataset`` (boxes, class names, masks) as PNGs in ``out_dir``.

    Files are named ``<index>_<image file stem>.png``. Returns the paths written.
    """
    classes = [str(c) for c in dataset.dataset.classes]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(min(limit, len(dataset))):
        sample = dataset[index]
        labels = np.asarray(sample.get("labels", np.zeros(0)), dtype=np.int64)
        drawn = draw_detections(
            displayable(sample), sample.get("boxes", np.zeros((0, 4))), labels, None, classes, sample.get("masks"),
        )
        stem = Path(str(sample.get("meta", {}).get("file") or "")).stem
        path = out_dir / (f"{index:05d}_{stem}.png" if stem else f"{index:05d}.png")
        cv2.imwrite(str(path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        written.append(path)
    return written
