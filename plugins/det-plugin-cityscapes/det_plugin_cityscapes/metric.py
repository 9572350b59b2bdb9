"""The ``cityscapes`` metric: official instance-level AP and AP50, next to COCO bbox and segm AP.

Each processed image's mask detections are written as the Cityscapes
benchmark's prediction files (one ``<city>_<seq>_<frame>_pred.txt`` listing
``<mask png> <label id> <score>`` per detection) into a temporary folder;
``compute()`` runs cityscapesscripts' ``evalInstanceLevelSemanticLabeling``
on them against the ``*_gtFine_instanceIds.png`` files, and det-sdk's ``coco``
metric on the same detections.

    >>> metric = CityscapesMetric()
    >>> metric.bind_dataset(val_dataset)               # doctest: +SKIP
    >>> metric.process(samples, detections)            # doctest: +SKIP
    >>> metric.compute()["cityscapes_AP"]              # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from det_plugin_cityscapes.annotations import render_polygons
from det_plugin_cityscapes.evaluator import evaluate_instances
from det_plugin_cityscapes.labels import CLASSES, LABEL_IDS
from det_plugin_cityscapes.layout import IMAGE_SUFFIX
from detsdk.builtin.evaluation.coco_metric import CocoMetric
from detsdk.errors import DataError


# Up to 100 full-size mask PNGs per image: 1-bit PNGs write several times faster than 8-bit ones.
_FAST_PNG = [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 1]


class CityscapesMetric:
    """Cityscapes' official instance-segmentation AP, plus COCO AP on the same detections.

    ``compute()`` returns, first, ``cityscapes_AP`` (mean over the 8 classes
    of the AP at mask IoU 0.50:0.95, the benchmark's headline number, so it is
    the figure ``best.pt`` is chosen by) and ``cityscapes_AP50``; with
    ``classwise`` also ``cityscapes_AP_<class>``; then ``bbox_mAP``,
    ``segm_mAP``, ... from the ``coco`` metric for ``iou_types``. As in the
    ``coco`` metric, a figure with no ground truth to measure is ``-1.0``
    (the evaluator's NaN).

    Ground truth per image is ``meta["annotation_file"]`` (what the
    ``cityscapes`` dataset sets: an instance PNG, or a polygon JSON that is
    rendered), else ``<gt_dir>/<city>/<name>_gtFine_instanceIds.png`` found from
    the image's file name (for the ``coco`` dataset over converted JSON).

    Args:
        iou_types: COCO figures to add (``bbox``, ``segm``); empty for none.
        classwise: add the official AP of each class.
        gt_dir: ``gtFine/<split>`` of the split evaluated, for datasets without ``annotation_file``.
        results_dir: write the prediction files there and keep them (the format
            the Cityscapes test server takes); empty: a temporary folder, removed after ``compute()``.
    """

    def __init__(
        self,
        iou_types: list[str] = ["bbox", "segm"],  # noqa: B006 - never mutated; a list so `sdk list` shows TOML
        classwise: bool = False,
        gt_dir: str = "",
        results_dir: str = "",
    ) -> None:
        self._coco = CocoMetric(iou_types=list(iou_types), classwise=classwise) if iou_types else None
        self.classwise = bool(classwise)
        self.gt_dir = str(gt_dir)
        self.results_dir = str(results_dir)
        self.summary = ""
        self._label_ids: list[int] = list(LABEL_IDS)
        self._work_dir: str | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every processed image and remove a temporary prediction folder."""
        self._remove_work_dir()
        self._pairs: dict[Any, tuple[str, str]] = {}  # image id -> (prediction file, ground-truth file)
        if self._coco is not None:
            self._coco.reset()

    def bind_dataset(self, dataset: Any) -> None:
        """Take the label id of each class from the dataset's ``cat_ids`` (Cityscapes label ids)."""
        cat_ids = getattr(dataset, "cat_ids", None)
        classes = list(getattr(dataset, "classes", []) or [])
        if cat_ids is not None:
            unknown = [c for c in cat_ids if c not in LABEL_IDS]
            if unknown:
                raise DataError(
                    f"metric 'cityscapes': dataset category ids {unknown[:5]} are not Cityscapes instance label ids "
                    f"({', '.join(map(str, LABEL_IDS))}); the metric needs the 8 Cityscapes classes"
                )
            self._label_ids = list(cat_ids)
        elif classes and classes != CLASSES:
            raise DataError(
                f"metric 'cityscapes': dataset classes {classes[:8]} are not the Cityscapes instance classes {CLASSES}"
            )
        if self._coco is not None:
            self._coco.bind_dataset(dataset)

    # -- input -------------------------------------------------------------
    def process(self, samples: Sequence[dict], detections: Sequence[dict]) -> None:
        """Write each new image's predictions; samples and detections are in original image pixels."""
        if len(samples) != len(detections):
            raise DataError(f"metric 'cityscapes': {len(samples)} samples but {len(detections)} detection sets")
        for sample, detection in zip(samples, detections):
            meta = sample.get("meta", {})
            image_id = meta.get("image_id")
            if image_id in self._pairs:
                continue  # a distributed sampler pads with repeats
            if "file" not in meta:
                raise DataError("metric 'cityscapes': a sample has no meta['file'] (the image path)")
            name = _frame_name(meta["file"])
            ground_truth = self._ground_truth_file(meta, name)
            self._pairs[image_id] = (self._write_predictions(name, detection, meta.get("ori_shape")), ground_truth)
        if self._coco is not None:
            self._coco.process(samples, detections)

    def _ground_truth_file(self, meta: dict, name: str) -> str:
        path = meta.get("annotation_file")
        if path is None:
            if not self.gt_dir:
                raise DataError(
                    "metric 'cityscapes': samples have no meta['annotation_file']; use the 'cityscapes' dataset "
                    "or set the metric's gt_dir to the gtFine/<split> folder"
                )
            path = os.path.join(self.gt_dir, name.split("_")[0], f"{name}_gtFine_instanceIds.png")
        if not os.path.isfile(path):
            raise DataError(f"metric 'cityscapes': ground-truth file not found: {path}")
        if path.endswith(".json"):  # polygons: the evaluator reads an instance PNG, so render one
            rendered = os.path.join(self._folder(), "gt", f"{name}_gtFine_instanceIds.png")
            os.makedirs(os.path.dirname(rendered), exist_ok=True)
            cv2.imwrite(rendered, render_polygons(path).astype(np.uint16))
            path = rendered
        return path

    def _write_predictions(self, name: str, detection: dict, size: tuple[int, int] | None) -> str:
        if detection.get("masks") is None:
            raise DataError(
                "metric 'cityscapes': the detections have no 'masks'; the official metric evaluates instance "
                "masks (use a mask detector such as mask_rcnn, or the 'coco' metric with iou_types = [\"bbox\"])"
            )
        masks = np.asarray(detection["masks"])
        labels = np.asarray(detection["labels"]).reshape(-1)
        scores = np.asarray(detection["scores"]).reshape(-1)
        if not len(masks) == len(labels) == len(scores):
            raise DataError(f"metric 'cityscapes': {name}: detection masks, labels and scores differ in length")
        if len(masks) and size is not None and masks.shape[1:] != tuple(size):
            raise DataError(
                f"metric 'cityscapes': {name}: detection masks are {masks.shape[1:]}, the image is {tuple(size)}; "
                "masks must be pasted at the original image size"
            )
        folder = self._folder()
        os.makedirs(os.path.join(folder, "masks"), exist_ok=True)
        lines = []
        for index, (mask, label, score) in enumerate(zip(masks, labels, scores)):
            if not 0 <= int(label) < len(self._label_ids):
                raise DataError(f"metric 'cityscapes': {name}: detection label {int(label)} is not one of the classes")
            if not mask.any():
                continue  # the evaluator skips empty masks too
            relative = f"masks/{name}_{index}.png"
            cv2.imwrite(os.path.join(folder, relative), (mask > 0).astype(np.uint8) * 255, _FAST_PNG)
            lines.append(f"{relative} {self._label_ids[int(label)]} {float(score)!r}\n")
        path = os.path.join(folder, f"{name}_pred.txt")
        Path(path).write_text("".join(lines), encoding="utf-8")
        return path

    def _folder(self) -> str:
        if self._work_dir is None:
            if self.results_dir:
                os.makedirs(self.results_dir, exist_ok=True)
                self._work_dir = self.results_dir
            else:
                self._work_dir = tempfile.mkdtemp(prefix="detsdk-cityscapes-")
        return self._work_dir

    def _remove_work_dir(self) -> None:
        if self._work_dir is not None and not self.results_dir:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        self._work_dir = None

    # -- output ------------------------------------------------------------
    def compute(self) -> dict[str, float]:
        """Official AP and AP50 (first), then the COCO figures; the printed tables land in ``self.summary``."""
        if not self._pairs:
            raise DataError("metric 'cityscapes': no images were processed; nothing to evaluate")
        predictions, ground_truth = zip(*self._pairs.values())
        try:
            result = evaluate_instances(list(predictions), list(ground_truth), self._folder())
        finally:
            self._remove_work_dir()
        averages = result.averages
        metrics = {"cityscapes_AP": _figure(averages["allAp"]), "cityscapes_AP50": _figure(averages["allAp50%"])}
        if self.classwise:
            for name, values in averages["classes"].items():
                metrics[f"cityscapes_AP_{name}"] = _figure(values["ap"])
        summary = [result.table]
        if self._coco is not None:
            metrics.update(self._coco.compute())
            summary.append(self._coco.summary)
        self.summary = "".join(summary)
        return metrics


def _frame_name(image_file: str) -> str:
    """``<city>_<seq>_<frame>`` from an image path ``.../<city>_<seq>_<frame>_leftImg8bit.png``."""
    base = os.path.basename(image_file)
    if not base.endswith(IMAGE_SUFFIX) or base.count("_") < 3:
        raise DataError(
            f"metric 'cityscapes': {image_file}: expected a Cityscapes image name <city>_<seq>_<frame>{IMAGE_SUFFIX}"
        )
    return base[: -len(IMAGE_SUFFIX)]


def _figure(value: Any) -> float:
    """The evaluator's NaN (nothing to measure) as -1.0, like pycocotools."""
    value = float(value)
    return -1.0 if math.isnan(value) else value
