"""Run a detector over a loader and feed a metric, in original image coordinates."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import nn

from detsdk.engine import distributed


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
    """Detect on every batch of ``loader`` and return ``metric.compute()``.

    In a distributed run each rank detects on its share (``loader``'s
    sampler); the results go to rank 0, which feeds ``metric`` in dataset
    order and computes; every rank returns rank 0's metrics, the figures one
    process evaluating the whole set gets.
    """
    distributed.broadcast_weights(model)  # every rank evaluates the weights rank 0 checkpoints
    sharded = distributed.get_world_size() > 1
    results: list[tuple[dict, dict]] = []
    was_training = model.training
    model.eval()
    try:
        for images, targets, metas, annotations in loader:
            detections = model(images.to(device), image_sizes=[t["image_size"] for t in targets])
            detections = [to_original_coordinates(d, m) for d, m in zip(detections, metas)]
            if sharded:
                results.extend(zip(annotations, detections))
            else:
                metric.process(annotations, detections)
            if progress is not None:
                progress.update(1)
    finally:
        model.train(was_training)
    if not sharded:
        return metric.compute()
    return merge_shards(metric, list(loader.sampler), results, loader.batch_size)


def merge_shards(metric, indices: list[int], results: list[tuple[dict, dict]], batch_size: int) -> dict[str, float]:
    """Gather every rank's ``(annotations, detections)`` to rank 0, compute there, broadcast the metrics.

    ``indices`` are the dataset indices of this rank's ``results``. Rank 0
    feeds the metric in dataset order, ``batch_size`` images at a time, as
    one process would. Masks travel as RLE: gathering costs bytes, not megabytes.
    """
    if len(indices) != len(results):
        raise ValueError(f"{len(results)} evaluated images but the sampler gave {len(indices)} indices")
    shard = [(index, _packed(annotations), _packed(detections))
             for index, (annotations, detections) in zip(indices, results)]
    shards = distributed.gather_object(shard)
    metrics = None
    if shards is not None:
        merged = sorted((item for part in shards for item in part), key=lambda item: item[0])
        for start in range(0, len(merged), max(1, batch_size)):
            chunk = merged[start : start + max(1, batch_size)]
            metric.process([_unpacked(a) for _, a, _ in chunk], [_unpacked(d) for _, _, d in chunk])
        metrics = metric.compute()
    return distributed.broadcast_object(metrics)


def _packed(record: dict) -> dict:
    """``record`` with binary ``masks`` (N×H×W) run-length encoded by pycocotools."""
    masks = record.get("masks")
    if masks is None or not isinstance(masks, np.ndarray) or masks.ndim != 3 or (masks.size and masks.max() > 1):
        return record
    encoded = mask_utils.encode(np.asfortranarray(masks.astype(np.uint8).transpose(1, 2, 0))) if len(masks) else []
    packed = {k: v for k, v in record.items() if k != "masks"}
    packed["masks_rle"] = (masks.shape, masks.dtype.str, encoded)
    return packed


def _unpacked(record: dict) -> dict:
    """The inverse of ``_packed``: the same masks array back."""
    if "masks_rle" not in record:
        return record
    shape, dtype, encoded = record["masks_rle"]
    masks = mask_utils.decode(encoded).transpose(2, 0, 1) if encoded else np.zeros(shape, np.uint8)
    unpacked = {k: v for k, v in record.items() if k != "masks_rle"}
    unpacked["masks"] = np.ascontiguousarray(masks).astype(np.dtype(dtype)).reshape(shape)
    return unpacked
