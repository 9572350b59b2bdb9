"""Built-in evaluation: COCO-style AP with pycocotools."""

from __future__ import annotations

from detsdk.builtin.evaluation.coco_metric import CocoMetric

__all__ = ["CocoMetric"]
