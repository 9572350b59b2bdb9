"""VOC mAP: per-class AP at IoU thresholds, in the 2007 11-point and the 2010+ area definitions.

    >>> metric = VocMetric(iou_thrs=[0.5], mode="area")
    >>> metric.bind_dataset(voc07_test)              # doctest: +SKIP
    >>> metric.process(samples, detections)          # doctest: +SKIP
    >>> metric.compute()["mAP"]                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detsdk.errors import DataError, RecipeError, suggest
from detsdk.evaluation.ap import AP_MODES, ImageDetections, evaluate_detections, mean_over_classes


class VocMetric:
    """Pascal VOC mean AP (matching and AP in ``detsdk.evaluation.ap``; ignore regions are ``difficult``).

    ``compute()`` returns, with ``t`` each IoU threshold in percent (``50``):

    - ``mAP``: the mean over classes (with ground truth) and thresholds of AP in ``mode``
      (what MMDetection reports as ``mAP``; the key ``best.pt`` is chosen by);
    - ``AP<t>``: the mean AP over classes at that threshold, in ``mode``;
    - ``AP<t>_area`` and ``AP<t>_11points``: the same in each definition;
    - ``recall``: the mean over classes and thresholds of the recall reached with every detection;
    - ``AP_<class>`` and ``recall_<class>``: per class, averaged over thresholds;
      ``-1.0`` for a class without ground truth in the evaluated images.

    Args:
        iou_thrs: IoU thresholds a detection must reach (VOC: 0.5).
        mode: ``"area"`` (VOC2010+, MMDetection's default also for VOC2007) or
            ``"11points"`` (the VOC2007 devkit's).
    """

    def __init__(self, iou_thrs: list = [0.5], mode: str = "area"):  # noqa: B006
        if mode not in AP_MODES:
            raise RecipeError(
                f"metric 'voc': mode = {mode!r}{suggest(str(mode), AP_MODES)}; expected one of {', '.join(AP_MODES)}"
            )
        if isinstance(iou_thrs, (int, float)):
            iou_thrs = [iou_thrs]
        if not iou_thrs or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 1 for t in iou_thrs):
            raise RecipeError(f"metric 'voc': iou_thrs = {iou_thrs!r}: expected a list of numbers in (0, 1]")
        self.iou_thrs = [float(t) for t in iou_thrs]
        self.mode = mode
        self.classes: list[str] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every processed image (the bound class names stay)."""
        self._images: dict[Any, ImageDetections] = {}

    def bind_dataset(self, dataset: Any) -> None:
        """Take the class names (and so the class count) from the evaluated dataset."""
        self.classes = [str(c) for c in dataset.classes]

    def process(self, samples: Sequence[dict], detections: Sequence[dict]) -> None:
        """Add one batch: annotation samples and detections, both in original image pixels."""
        if len(samples) != len(detections):
            raise DataError(f"metric 'voc': {len(samples)} samples but {len(detections)} detection sets")
        for sample, detection in zip(samples, detections):
            image_id = sample.get("meta", {}).get("image_id", len(self._images))
            if image_id not in self._images:  # a repeated image (padded distributed sampler) counts once
                self._images[image_id] = ImageDetections.from_sample(sample, detection)

    def compute(self) -> dict[str, float]:
        """Evaluate every image processed so far; flat keys as described in the class docstring."""
        images = list(self._images.values())
        classes = self.classes or [str(i) for i in range(_label_count(images))]
        per_thr = [evaluate_detections(images, len(classes), thr) for thr in self.iou_thrs]
        metrics: dict[str, float] = {"mAP": 0.0}
        for thr, results in zip(self.iou_thrs, per_thr):
            metrics[f"AP{round(thr * 100)}"] = mean_over_classes([r.ap[self.mode] for r in results])
        for thr, results in zip(self.iou_thrs, per_thr):
            for mode in AP_MODES:
                metrics[f"AP{round(thr * 100)}_{mode}"] = mean_over_classes([r.ap[mode] for r in results])
        metrics["mAP"] = sum(metrics[f"AP{round(t * 100)}"] for t in self.iou_thrs) / len(self.iou_thrs)
        metrics["recall"] = sum(mean_over_classes([r.recall for r in results]) for results in per_thr) / len(per_thr)
        for label, name in enumerate(classes):
            measured = [results[label] for results in per_thr if results[label].num_gts > 0]
            metrics[f"AP_{name}"] = sum(r.ap[self.mode] for r in measured) / len(measured) if measured else -1.0
            metrics[f"recall_{name}"] = sum(r.recall for r in measured) / len(measured) if measured else -1.0
        return metrics


def _label_count(images: list[ImageDetections]) -> int:
    labels = [int(i.gt_labels.max()) for i in images if len(i.gt_labels)]
    labels += [int(i.det_labels.max()) for i in images if len(i.det_labels)]
    return max(labels) + 1 if labels else 0
