"""Run a detector over a loader and feed a metric, in original image coordinates."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def to_original_coordinates(detection: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Undo the pipeline's resize and flip on one image's detections; masks are resized to the original image."""
    boxes = detection["boxes"].detach().float().cpu().numpy().astype(np.float64)
    height, width = meta.get("ori_shape", meta.get("img_shape"))
    img_h, img_w = meta.get("img_shape", (height, width))
    if meta.get("flip"):
        if meta.get("flip_direction", "horizontal") == "vertical":
            boxes[:, [1, 3]] = img_h - boxes[:, [3, 1]]
        else:
            boxes[:, [0, 2]] = img_w - boxes[:, [2, 0]]
    scale_w, scale_h = meta.get("scale_factor", (1.0, 1.0))
    boxes /= np.array([scale_w, scale_h, scale_w, scale_h])
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    result = {
        "boxes": boxes,
        "scores": detection["scores"].detach().float().cpu().numpy(),
        "labels": detection["labels"].detach().cpu().numpy().astype(np.int64),
    }
    if "masks" in detection:
        result["masks"] = _masks_to_original(detection["masks"], meta, (height, width))
    return result


def _masks_to_original(masks: torch.Tensor, meta: dict, size: tuple[int, int]) -> np.ndarray:
    """Crop padded masks to the resized image, undo the flip, resize to ``size`` and binarise."""
    img_h, img_w = meta.get("img_shape", masks.shape[-2:])
    masks = masks.detach().float()
    if masks.dim() == 4:
        masks = masks[:, 0]
    masks = masks[:, :img_h, :img_w]
    if meta.get("flip"):
        masks = masks.flip(-2 if meta.get("flip_direction") == "vertical" else -1)
    if len(masks):
        masks = torch.nn.functional.interpolate(masks[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return (masks >= 0.5).to(torch.uint8).cpu().numpy().reshape(-1, *size)


@torch.no_grad()
def run_evaluation(model: nn.Module, loader, metric, device: torch.device, progress=None) -> dict[str, float]:
    """Detect on every batch of ``loader`` and return ``metric.compute()``."""
    was_training = model.training
    model.eval()
    try:
        for images, targets, metas, annotations in loader:
            detections = model(images.to(device), image_sizes=[t["image_size"] for t in targets])
            metric.process(annotations, [to_original_coordinates(d, m) for d, m in zip(detections, metas)])
            if progress is not None:
                progress.update(1)
    finally:
        model.train(was_training)
    return metric.compute()
