"""Boxes, class names and masks drawn onto an image (predictions in ``plots/``, samples in ``sdk data browse``)."""

from __future__ import annotations

import cv2
import numpy as np

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0)]


def draw_detections(
    image: np.ndarray, boxes, labels, scores, class_names: list[str], masks=None, score_thr: float = 0.3,
    min_side: int = 384,
) -> np.ndarray:
    """Return an RGB copy of ``image`` with boxes, class names and scores (and masks) drawn.

    Images smaller than ``min_side`` are enlarged first, so labels do not hide small objects.
    ``scores = None`` (ground truth) draws every box with its class name only.
    """
    keep = np.asarray(scores) >= score_thr if scores is not None else np.ones(len(labels), dtype=bool)
    zoom = max(1, min_side // max(1, min(image.shape[:2])))
    canvas = np.ascontiguousarray(image.copy())
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * zoom
    if zoom > 1:
        canvas = cv2.resize(canvas, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        if masks is not None and len(masks):
            masks = np.asarray(masks).repeat(zoom, axis=1).repeat(zoom, axis=2)
    if masks is not None and len(masks):
        for mask, label in zip(np.asarray(masks)[keep], np.asarray(labels)[keep]):
            colour = np.array(PALETTE[int(label) % len(PALETTE)], dtype=np.float32)
            region = mask.astype(bool)
            canvas[region] = (0.5 * canvas[region] + 0.5 * colour).astype(np.uint8)
    shown_scores = np.asarray(scores)[keep] if scores is not None else [None] * int(keep.sum())
    for box, label, score in zip(boxes[keep], np.asarray(labels)[keep], shown_scores):
        colour = PALETTE[int(label) % len(PALETTE)]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        name = class_names[int(label)] if int(label) < len(class_names) else str(int(label))
        text = name if score is None else f"{name} {float(score):.2f}"
        (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        top = max(y1 - height - 4, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 2, top + height + 4), colour, -1)
        cv2.putText(canvas, text, (x1 + 1, top + height + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return canvas
