"""COCO-style detection and instance-segmentation AP, computed by faster-coco-eval or pycocotools.

Two sources of ground truth:

- a bound dataset with ``coco_gt`` (a COCO-format dict) and ``cat_ids``
  (0-based label -> category id): the official annotations, evaluated exactly
  as pycocotools would evaluate them by hand;
- otherwise the processed samples themselves, turned into a COCO dict, so any
  dataset that yields samples can be evaluated.

    >>> metric = CocoMetric(iou_types=["bbox"])
    >>> metric.bind_dataset(val_dataset)            # doctest: +SKIP
    >>> metric.process(samples, detections)         # doctest: +SKIP
    >>> metric.compute()["bbox_mAP"]                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from detsdk.analysis.pr_curves import pr_curves
from detsdk.errors import DataError, RecipeError, suggest
from detsdk.evaluation.coco_backend import BACKENDS, Backend, coco_from_dict, results_for, run_cocoeval, summarize

IOU_TYPES = ("bbox", "segm")
# COCOeval.stats[0:6], in order, under MMDetection's key suffixes.
STAT_NAMES = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")


class CocoMetric:
    """COCO AP (``bbox`` and/or ``segm``) with ``COCOeval``.

    ``backend``: ``"faster_coco_eval"`` (default; the same figures as
    pycocotools to within 1e-12, several times faster) or ``"pycocotools"``.
    After ``compute()``, ``evaluations`` holds each iou type's ``COCOeval``
    (``.stats``, ``.eval["precision"]``) and ``ground_truth``/``results`` the
    COCO dicts it was given, for ``detsdk.analysis``.

    ``compute()`` returns flat MMDetection-style keys: ``bbox_mAP``,
    ``bbox_mAP_50``, ``bbox_mAP_75``, ``bbox_mAP_s``, ``bbox_mAP_m``,
    ``bbox_mAP_l`` (and ``segm_*``), plain floats at full precision;
    ``classwise = true`` adds ``bbox_mAP_<class name>`` per class. As in
    pycocotools, a figure with no ground truth to measure (no small objects,
    a class absent from the images) is ``-1.0``.

    Images evaluated: those passed to ``process()``; when none were (only
    ``add_coco_results()``), every image of the bound ground truth, as
    ``COCOeval`` does by default. An image seen twice (a distributed sampler
    pads with repeats) counts once.
    """

    def __init__(
        self, iou_types: list[str] = ["bbox"], classwise: bool = False,  # noqa: B006
        backend: Backend = "faster_coco_eval",
    ) -> None:
        if isinstance(iou_types, str):
            iou_types = [iou_types]
        for iou_type in iou_types:
            if iou_type not in IOU_TYPES:
                raise RecipeError(
                    f"metric 'coco': unknown iou_types entry {iou_type!r}{suggest(str(iou_type), IOU_TYPES)}; "
                    f"expected some of {', '.join(IOU_TYPES)}"
                )
        if not iou_types:
            raise RecipeError("metric 'coco': iou_types is empty; expected some of bbox, segm")
        self.iou_types = list(dict.fromkeys(iou_types))
        self.classwise = bool(classwise)
        if backend not in BACKENDS:
            raise RecipeError(
                f"metric 'coco': unknown backend {backend!r}{suggest(str(backend), BACKENDS)}; "
                f"expected one of {', '.join(BACKENDS)}"
            )
        self.backend = backend
        self.summary = ""
        self._coco_gt: dict | None = None
        self.dataset: Any = None
        self._cat_ids: list | None = None
        self._classes: list[str] | None = None
        self.reset()

    # -- state -------------------------------------------------------------
    def reset(self) -> None:
        """Forget every processed sample, detection and raw result (the bound dataset stays)."""
        self._images: dict[Any, tuple[int, int]] = {}  # image_id -> (height, width), in order seen
        self._gt: list[dict] = []  # annotations of processed samples, by label
        self._detections: list[dict] = []  # COCO-like results, by label and original image_id
        self._raw_results: list[dict] = []
        self.summary = ""
        self.evaluations: dict[str, Any] = {}
        self.ground_truth: dict | None = None
        self.results: list[dict] = []
        self.image_ids: list = []
        self.categories: list[tuple[Any, str]] = []

    def bind_dataset(self, dataset: Any) -> None:
        """Use a dataset's official ground truth (``coco_gt`` + ``cat_ids``) and class names, when it has them."""
        self.dataset = dataset  # for detsdk.analysis: the images behind the image ids
        classes = getattr(dataset, "classes", None)
        self._classes = list(classes) if classes is not None else None
        coco_gt = getattr(dataset, "coco_gt", None)
        cat_ids = getattr(dataset, "cat_ids", None)
        if coco_gt is not None and cat_ids is not None:
            if not isinstance(coco_gt, dict) or "images" not in coco_gt or "annotations" not in coco_gt:
                raise DataError(f"{type(dataset).__name__}.coco_gt is not a COCO-format dict (images, annotations)")
            self._coco_gt = coco_gt
            self._cat_ids = list(cat_ids)
        else:
            self._coco_gt = None
            self._cat_ids = None

    # -- input -------------------------------------------------------------
    def process(self, samples: Sequence[dict], detections: Sequence[dict]) -> None:
        """Add one batch: annotation samples and their detections, both in original image coordinates."""
        if len(samples) != len(detections):
            raise DataError(f"metric 'coco': {len(samples)} samples but {len(detections)} detection sets")
        for sample, detection in zip(samples, detections):
            meta = sample.get("meta", {})
            if "image_id" not in meta:
                raise DataError("metric 'coco': a sample has no meta['image_id']")
            image_id = meta["image_id"]
            if image_id in self._images:
                continue
            self._images[image_id] = _image_size(sample)
            self._add_ground_truth(image_id, sample)
            self._add_detections(image_id, detection, self._images[image_id])

    def add_coco_results(self, results: Iterable[dict]) -> None:
        """Add raw COCO-format results (``image_id``, ``category_id``, ``bbox``/``segmentation``, ``score``) as-is."""
        for result in results:
            if not isinstance(result, dict) or not {"image_id", "category_id", "score"} <= result.keys():
                raise DataError(
                    f"metric 'coco': a COCO result needs image_id, category_id and score, got {result!r:.200}"
                )
            self._raw_results.append(result)

    def _add_ground_truth(self, image_id: Any, sample: dict) -> None:
        boxes = _as_numpy(sample.get("boxes", np.zeros((0, 4)))).astype(np.float64).reshape(-1, 4)
        labels = _as_numpy(sample.get("labels", np.zeros(0))).astype(np.int64).reshape(-1)
        count = len(boxes)
        iscrowd = np.zeros(count, bool)
        if sample.get("iscrowd") is not None:
            iscrowd = _as_numpy(sample["iscrowd"]).astype(bool).reshape(-1)
        areas = _as_numpy(sample["areas"]).astype(np.float64).reshape(-1) if "areas" in sample else None
        rles = _encode_masks(sample["masks"]) if sample.get("masks") is not None else None
        if len(labels) != count or len(iscrowd) != count or (rles is not None and len(rles) != count):
            raise DataError(f"metric 'coco': image {image_id!r}: boxes, labels, iscrowd and masks differ in length")
        xywh = _xyxy_to_xywh(boxes)
        for i in range(count):
            if areas is not None:
                area = float(areas[i])
            elif rles is not None:
                area = float(mask_utils.area(rles[i]))
            else:
                area = float(xywh[i, 2] * xywh[i, 3])
            annotation = {
                "image_id": image_id,
                "label": int(labels[i]),
                "bbox": xywh[i].tolist(),
                "area": area,
                "iscrowd": int(iscrowd[i]),
            }
            if rles is not None:
                annotation["segmentation"] = rles[i]
            self._gt.append(annotation)

    def _add_detections(self, image_id: Any, detection: dict, size: tuple[int, int]) -> None:
        boxes = _as_numpy(detection["boxes"]).astype(np.float64).reshape(-1, 4)
        scores = _as_numpy(detection["scores"]).reshape(-1)
        labels = _as_numpy(detection["labels"]).astype(np.int64).reshape(-1)
        rles = None
        if "segm" in self.iou_types:
            if detection.get("masks") is None:
                raise DataError(
                    "metric 'coco': iou_types includes 'segm' but the detections have no 'masks'; "
                    "use a detector that predicts masks or evaluate iou_types = [\"bbox\"]"
                )
            rles = _encode_masks(detection["masks"])
            if rles and size != (0, 0) and tuple(rles[0]["size"]) != size:
                raise DataError(
                    f"metric 'coco': image {image_id!r}: detection masks are {tuple(rles[0]['size'])}, "
                    f"the original image is {size}; masks must be pasted at original size"
                )
        if not len(boxes) == len(scores) == len(labels) or (rles is not None and len(rles) != len(boxes)):
            raise DataError(
                f"metric 'coco': image {image_id!r}: detection boxes, scores, labels and masks differ in length"
            )
        xywh = _xyxy_to_xywh(boxes)
        for i in range(len(boxes)):
            result = {
                "image_id": image_id,
                "label": int(labels[i]),
                "bbox": xywh[i].tolist(),
                "score": float(scores[i]),
            }
            if rles is not None:
                result["segmentation"] = rles[i]
            self._detections.append(result)

    # -- output ------------------------------------------------------------
    def coco_results(self) -> list[dict]:
        """The processed detections as COCO-format results (a results JSON, for ``sdk eval --results``).

        Category ids come from the bound ``cat_ids``; without them, ``label + 1``.
        """
        category_of = self._category_mapper()
        return [
            {"image_id": r["image_id"], "category_id": category_of(r["label"]), **_without(r, ("image_id", "label"))}
            for r in self._detections
        ]

    def compute(self) -> dict[str, float]:
        """Evaluate everything added so far; the printed pycocotools summary lands in ``self.summary``."""
        if self._coco_gt is not None:
            gt, image_ids, results, classes = self._official_ground_truth()
        else:
            gt, image_ids, results, classes = self._sample_ground_truth()
        self.ground_truth, self.results, self.image_ids, self.categories = gt, results, image_ids, classes
        coco_gt = coco_from_dict(gt, self.backend)
        metrics: dict[str, float] = {}
        summaries = []
        self.evaluations = {}
        for iou_type in self.iou_types:
            evaluation = run_cocoeval(coco_gt, results_for(iou_type, results), iou_type, image_ids, self.backend)
            self.evaluations[iou_type] = evaluation
            summaries.append(f"Evaluate annotation type *{iou_type}*\n{summarize(evaluation)}")
            for name, value in zip(STAT_NAMES, evaluation.stats[: len(STAT_NAMES)]):
                metrics[f"{iou_type}_{name}"] = float(value)
            if self.classwise:
                metrics.update(_classwise_ap(evaluation, iou_type, classes))
        self.summary = "".join(summaries)
        return metrics

    # -- ground truth ------------------------------------------------------
    def _official_ground_truth(self):
        """The bound ``coco_gt``, untouched except for copies pycocotools may scribble on."""
        gt = dict(self._coco_gt)
        # COCOeval writes into annotation dicts (ignore flags, RLE); keep the dataset's own clean.
        gt["annotations"] = [dict(a) for a in self._coco_gt["annotations"]]
        known = {image["id"] for image in gt["images"]}
        if self._images:
            image_ids = list(self._images)
            unknown = [i for i in image_ids if i not in known]
            if unknown:
                raise DataError(
                    f"metric 'coco': processed image ids not in the dataset's coco_gt: {unknown[:5]} "
                    "(meta['image_id'] must be the COCO image id)"
                )
        else:
            image_ids = sorted(known)
        unknown = sorted({r["image_id"] for r in self._raw_results} - known, key=str)
        if unknown:
            raise DataError(f"metric 'coco': results reference image ids not in the ground truth: {unknown[:5]}")
        results = self.coco_results() + self._raw_results
        names = {c["id"]: c.get("name", str(c["id"])) for c in gt.get("categories", [])}
        if self._classes is not None and len(self._classes) == len(self._cat_ids):
            classes = list(zip(self._cat_ids, self._classes))
        else:
            classes = [(cat_id, names.get(cat_id, str(cat_id))) for cat_id in self._cat_ids]
        return gt, image_ids, results, classes

    def _sample_ground_truth(self):
        """A COCO dict built from the processed samples: image ids 1..N, category id = label + 1."""
        if self._raw_results:
            raise DataError(
                "metric 'coco': raw COCO results need COCO ground truth; bind a dataset with "
                "'coco_gt' and 'cat_ids' (bind_dataset) before add_coco_results"
            )
        image_index = {image_id: n for n, image_id in enumerate(self._images, start=1)}
        images = [{"id": image_index[i], "height": h, "width": w, "source_image_id": i}
                  for i, (h, w) in self._images.items()]
        if self._classes is not None:
            labels = range(len(self._classes))
        else:
            labels = sorted({a["label"] for a in self._gt} | {r["label"] for r in self._detections})
        categories = [{"id": label + 1, "name": self._class_name(label)} for label in labels]
        annotations = []
        for n, annotation in enumerate(self._gt, start=1):
            if "segm" in self.iou_types and "segmentation" not in annotation:
                raise DataError(
                    "metric 'coco': iou_types includes 'segm' but the samples have no 'masks' to take "
                    "ground truth from; bind a dataset with coco_gt or evaluate iou_types = [\"bbox\"]"
                )
            entry = _without(annotation, ("image_id", "label"))
            entry.update(id=n, image_id=image_index[annotation["image_id"]], category_id=annotation["label"] + 1)
            annotations.append(entry)
        results = [
            {
                **_without(r, ("image_id", "label")),
                "image_id": image_index[r["image_id"]],
                "category_id": r["label"] + 1,
            }
            for r in self._detections
        ]
        gt = {"images": images, "annotations": annotations, "categories": categories}
        classes = [(c["id"], c["name"]) for c in categories]
        return gt, [image["id"] for image in images], results, classes

    def _class_name(self, label: int) -> str:
        if self._classes is not None and 0 <= label < len(self._classes):
            return str(self._classes[label])
        return str(label)

    def _category_mapper(self):
        if self._cat_ids is None:
            return lambda label: label + 1
        cat_ids = self._cat_ids

        def category_of(label: int):
            if not 0 <= label < len(cat_ids):
                raise DataError(f"metric 'coco': detection label {label} has no category id ({len(cat_ids)} classes)")
            return cat_ids[label]

        return category_of


def _classwise_ap(evaluation: Any, iou_type: str, classes: list[tuple[Any, str]]) -> dict[str, float]:
    """AP per class at IoU 0.50:0.95, all areas, 100 detections; -1.0 for a class without ground truth."""
    curves = pr_curves(evaluation, classes)
    return {f"{iou_type}_mAP_{name}": float(ap) for name, ap in zip(curves.classes, curves.ap)}


# -- conversions ------------------------------------------------------------
def _as_numpy(value: Any) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """x1 y1 x2 y2 -> x y w h, in float64 so COCO boxes lose nothing."""
    boxes = boxes.astype(np.float64, copy=True)
    boxes[:, 2:] -= boxes[:, :2]
    return boxes


def _encode_masks(masks: Any) -> list[dict]:
    """N×H×W binary masks -> compressed RLEs with ``str`` counts (JSON-ready, accepted by pycocotools)."""
    masks = _as_numpy(masks)
    if masks.ndim != 3:
        raise DataError(f"metric 'coco': masks must be N×H×W, got shape {masks.shape}")
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray((masks > 0).astype(np.uint8).transpose(1, 2, 0)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def _image_size(sample: dict) -> tuple[int, int]:
    """(height, width) of the original image: ``meta['ori_shape']``, else the masks' or the image's size."""
    shape = sample.get("meta", {}).get("ori_shape")
    if shape is None and sample.get("masks") is not None:
        shape = _as_numpy(sample["masks"]).shape[1:]
    if shape is None and sample.get("image") is not None:
        shape = np.shape(sample["image"])
    if shape is None:
        return (0, 0)
    return (int(shape[0]), int(shape[1]))


def _without(mapping: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in mapping.items() if k not in keys}
