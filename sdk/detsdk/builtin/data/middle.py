"""MMDetection's middle format: one JSON list of images, each with its boxes, labels and ignore boxes.

The format MMDetection's ``CustomDataset`` reads (its "add a new dataset"
chapter), as JSON only (never pickle: loading data must not run code)::

    [
      {"filename": "a.jpg", "width": 1280, "height": 720,
       "ann": {"bboxes": [[x1, y1, x2, y2], ...], "labels": [0, ...],
               "bboxes_ignore": [[x1, y1, x2, y2], ...], "labels_ignore": [2, ...]}},
      ...
    ]

Boxes are in pixels, labels 0-based indices into ``class_names``.
``bboxes_ignore`` become ignore regions (``iscrowd`` True), as COCO crowd
regions: never trained on, and detections on them count neither way in
evaluation. An ignore box without ``labels_ignore`` ignores every class.

    >>> ds = MiddleDataset("train.json", class_names=["cat", "dog"], images="imgs")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from detsdk.builtin.data.coco import read_json
from detsdk.builtin.data.records import RecordsDataset
from detsdk.errors import DataError, RecipeError, warn


class MiddleDataset(RecordsDataset):
    """Samples from a middle-format JSON file, in the order of its list.

    ``meta["image_id"]`` is the entry's position in the list plus one.
    Boxes that are not finite or have no area are dropped with one warning.

    Args:
        ann_file: the JSON file (a list of image entries).
        class_names: the name of each label, in label order (the format itself has only numbers).
        images: the folder each ``filename`` is relative to ("" uses it as given).
    """

    def __init__(self, ann_file: str, class_names: list, images: str = ""):
        self.ann_file = str(ann_file)
        self.images = str(images)
        if not isinstance(class_names, (list, tuple)) or not class_names or not all(
            isinstance(n, str) and n for n in class_names
        ):
            raise RecipeError(f"middle: class_names = {class_names!r}: expected a non-empty list of class names")
        self.classes: list[str] = list(class_names)
        self._records = [self._parse(i, e) for i, e in enumerate(_load_list(self.ann_file))]
        dropped = sum(e.pop("dropped") for e in self._records)
        if dropped:
            warn(
                f"{self.ann_file}: dropped {dropped} box(es) that are not finite or have no area "
                "(expected [x1, y1, x2, y2] with x2 > x1 and y2 > y1)"
            )

    def _parse(self, index: int, entry: Any) -> dict:
        where = f"{self.ann_file}: entry {index}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object with filename, width, height, ann; got {type(entry).__name__}")
        missing = [k for k in ("filename", "width", "height") if k not in entry]
        if missing:
            raise DataError(f"{where}: missing {', '.join(missing)} (each entry needs filename, width, height, ann)")
        width, height = entry["width"], entry["height"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
            raise DataError(
                f"{where} ({entry['filename']}): width and height must be positive integers, got {width!r}, {height!r}"
            )
        ann = entry.get("ann", {})
        if not isinstance(ann, dict):
            raise DataError(f"{where} ({entry['filename']}): 'ann' must be an object with bboxes and labels")
        boxes, labels = self._boxes_and_labels(ann, "bboxes", "labels", f"{where} ({entry['filename']})")
        ignore_boxes, ignore_labels = self._ignore(ann, f"{where} ({entry['filename']})")
        keep = _has_area(boxes)
        keep_ignore = _has_area(ignore_boxes)
        return {
            "file": os.path.join(self.images, str(entry["filename"])),
            "image_id": index + 1,
            "shape": (height, width),
            "boxes": np.concatenate([boxes[keep], ignore_boxes[keep_ignore]]).astype(np.float32),
            "labels": np.concatenate([labels[keep], ignore_labels[keep_ignore]]).astype(np.int64),
            "iscrowd": np.concatenate([np.zeros(keep.sum(), bool), np.ones(keep_ignore.sum(), bool)]),
            "dropped": int((~keep).sum() + (~keep_ignore).sum()),
        }

    def _boxes_and_labels(self, ann: dict, box_key: str, label_key: str, where: str) -> tuple[np.ndarray, np.ndarray]:
        boxes = _box_array(ann.get(box_key, []), f"{where}: ann.{box_key}")
        raw_labels = ann.get(label_key, [])
        try:
            labels = np.asarray(raw_labels, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise DataError(f"{where}: ann.{label_key} must be a list of integers, got {str(raw_labels)[:80]}") from None
        if len(labels) != len(boxes):
            raise DataError(f"{where}: {len(boxes)} ann.{box_key} but {len(labels)} ann.{label_key}")
        if labels.size and (np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() >= len(self.classes)):
            raise DataError(
                f"{where}: ann.{label_key} must be 0-based integers below {len(self.classes)} "
                f"(the number of class_names), got {labels.min():g}..{labels.max():g}"
            )
        return boxes, labels.astype(np.int64)

    def _ignore(self, ann: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
        """Ignore boxes and their labels; without ``labels_ignore`` each box is repeated for every class."""
        if ann.get("labels_ignore") is not None:
            return self._boxes_and_labels(ann, "bboxes_ignore", "labels_ignore", where)
        boxes = _box_array(ann.get("bboxes_ignore", []), f"{where}: ann.bboxes_ignore")
        num_classes = len(self.classes)
        return np.repeat(boxes, num_classes, axis=0), np.tile(np.arange(num_classes), len(boxes))

    def describe(self, index: int) -> str:
        """Errors name the entry and the annotation file."""
        return f"entry {index} of {self.ann_file}"

    def __repr__(self) -> str:
        return f"MiddleDataset({self.ann_file!r}, images={len(self)}, classes={len(self.classes)})"


def _load_list(path: str) -> list:
    if path.endswith((".pkl", ".pickle")):
        raise DataError(f"{path}: pickle files are not read (loading them can run code); convert it to JSON")
    data = read_json(path, "a middle-format JSON list")
    if not isinstance(data, list):
        raise DataError(
            f"{path}: expected a JSON list of images (filename, width, height, ann), got {type(data).__name__}"
        )
    return data


def _box_array(value: Any, where: str) -> np.ndarray:
    """A list of ``[x1, y1, x2, y2]`` as float64 N×4."""
    try:
        boxes = np.asarray(value if value is not None else [], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected a list of [x1, y1, x2, y2] boxes, got {str(value)[:80]}") from None
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{where}: expected a list of [x1, y1, x2, y2] boxes, got shape {boxes.shape}")
    return boxes


def _has_area(boxes: np.ndarray) -> np.ndarray:
    finite = np.all(np.isfinite(boxes), axis=1) if len(boxes) else np.zeros(0, bool)
    with np.errstate(invalid="ignore"):
        return finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])

