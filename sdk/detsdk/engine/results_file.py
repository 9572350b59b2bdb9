"""Saved COCO-format detections (a results JSON): read, checked, and what they can be evaluated as."""

from __future__ import annotations

import json
from pathlib import Path

from detsdk.errors import DataError


def read_results(path: Path) -> list[dict]:
    """A COCO results JSON: a list of detections, each with image_id, category_id, score and bbox or segmentation."""
    if not path.is_file():
        raise DataError(f"results file not found: {path}")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(results, list):
        raise DataError(f"{path}: expected a JSON list of COCO detections, got {type(results).__name__}")
    for index, entry in enumerate(results):
        if not isinstance(entry, dict) or not {"image_id", "category_id", "score"} <= entry.keys() or not (
            "bbox" in entry or "segmentation" in entry
        ):
            raise DataError(
                f"{path}: item {index}: expected image_id, category_id, score and bbox or segmentation"
            )
    return results


def results_iou_types(results: list[dict], path: Path) -> list[str]:
    """What a results file can be scored as: ``["bbox"]``, plus ``"segm"`` when every result has a mask.

    Boxes of mask-only results come from their masks (as pycocotools'
    ``loadRes`` does). A file where only some results carry masks is an
    error: it would evaluate masks on part of the detections.
    """
    with_masks = sum("segmentation" in r for r in results)
    if with_masks and with_masks != len(results):
        raise DataError(
            f"{path}: {with_masks} of {len(results)} results have a 'segmentation'; "
            "expected all of them (mask results) or none (box results)"
        )
    return ["bbox", "segm"] if with_masks else ["bbox"]
