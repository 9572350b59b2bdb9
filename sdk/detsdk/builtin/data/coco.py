"""COCO-format detection datasets: boxes, labels, crowd regions and masks.

    >>> ds = CocoDataset("data/coco/annotations/instances_val2017.json", images="data/coco/val2017")  # doctest: +SKIP
    >>> sample = ds[0]; sample["boxes"].shape, ds.classes[sample["labels"][0]]                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import cv2
import numpy as np

from detsdk.errors import DataError, warn

REQUIRED_KEYS = ("images", "annotations", "categories")


class CocoDataset:
    """Samples from a COCO annotation file, in the order of its ``images`` list.

    ``classes`` are the category names sorted by category id; label ``i``
    stands for category id ``cat_ids[i]``. Crowd annotations are kept with
    ``iscrowd`` True (detectors treat them as ignore regions); annotations
    whose box is missing, not finite or empty are dropped with one warning.

    Args:
        ann_file: the COCO JSON file (a relative path is relative to the working directory).
        images: the folder that ``file_name`` of each image is relative to ("" uses ``file_name`` as given).
        with_masks: also return ``masks`` (N×H×W uint8) decoded from polygons or RLE.
        filter_empty: leave out images that have no non-crowd box (MMDetection's ``filter_empty_gt``).
    """

    def __init__(self, ann_file: str, images: str = "", with_masks: bool = False, filter_empty: bool = False):
        self.ann_file = str(ann_file)
        self.images = str(images)
        self.with_masks = bool(with_masks)
        self.coco_gt: dict = _load_json(self.ann_file)
        categories = _check_list(self.coco_gt, "categories", self.ann_file)
        for category in categories:
            if not isinstance(category, dict) or "id" not in category or "name" not in category:
                raise DataError(f"{self.ann_file}: each entry of 'categories' needs 'id' and 'name', got {category!r}")
        categories = sorted(categories, key=lambda c: c["id"])
        self.classes: list[str] = [str(c["name"]) for c in categories]
        self.cat_ids: list[int] = [c["id"] for c in categories]
        self.cat_id_to_label: dict[int, int] = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}

        image_infos = _check_list(self.coco_gt, "images", self.ann_file)
        for info in image_infos:
            missing = [k for k in ("id", "file_name", "height", "width") if not isinstance(info, dict) or k not in info]
            if missing:
                raise DataError(
                    f"{self.ann_file}: an entry of 'images' lacks {', '.join(missing)} "
                    f"(each image needs id, file_name, height, width): {str(info)[:200]}"
                )
        annotations = _check_list(self.coco_gt, "annotations", self.ann_file)
        self._annotations = self._index_annotations(image_infos, annotations)
        if filter_empty:
            image_infos = [
                info for info in image_infos if not self._annotations[info["id"]]["iscrowd"].all()
            ]
        self._image_infos: list[dict] = image_infos
        self.image_ids: list[int] = [info["id"] for info in image_infos]

    # -- reading annotations once ------------------------------------------------
    def _index_annotations(self, image_infos: list[dict], annotations: list) -> dict[Any, dict]:
        """Per image id: boxes, labels, iscrowd, areas and the raw annotations kept, in file order."""
        per_image: dict[Any, list[dict]] = {info["id"]: [] for info in image_infos}
        invalid = 0
        for ann in annotations:
            if not isinstance(ann, dict) or ann.get("image_id") not in per_image:
                continue  # annotations of images not listed cannot be used (pycocotools ignores them too)
            if ann.get("category_id") not in self.cat_id_to_label:
                raise DataError(
                    f"{self.ann_file}: annotation {ann.get('id')!r} has category_id {ann.get('category_id')!r}, "
                    f"expected one of the ids in 'categories' ({_short_list(self.cat_ids)})"
                )
            if _valid_box(ann.get("bbox")) is None:
                invalid += 1
                continue
            per_image[ann["image_id"]].append(ann)
        if invalid:
            warn(
                f"{self.ann_file}: dropped {invalid} annotation(s) with an invalid box "
                "(expected bbox = [x, y, width, height], finite, width and height > 0)"
            )
        used = {ann["category_id"] for anns in per_image.values() for ann in anns}
        unused = [(cat_id, name) for cat_id, name in zip(self.cat_ids, self.classes) if cat_id not in used]
        if unused:  # labelme's "_background_", say: num_classes = "auto" counts it, the user should know
            listed = ", ".join(f"'{name}' (id {cat_id})" for cat_id, name in unused[:5])
            warn(
                f"{self.ann_file}: {len(unused)} of {len(self.cat_ids)} categories have no annotations: {listed}"
                f"{', ...' if len(unused) > 5 else ''}; they still count as classes (num_classes = \"auto\" "
                f"gives {len(self.cat_ids)}); remove them from 'categories' if they are not classes"
            )
        index = {}
        for image_id, anns in per_image.items():
            boxes = np.array([_valid_box(a["bbox"]) for a in anns], dtype=np.float32).reshape(-1, 4)
            index[image_id] = {
                "boxes": boxes,
                "labels": np.array([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=np.int64),
                "iscrowd": np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
                "areas": np.array(
                    [float(a.get("area", (b[2] - b[0]) * (b[3] - b[1]))) for a, b in zip(anns, boxes)],
                    dtype=np.float32,
                ),
                "anns": anns,
            }
        return index

    # -- the dataset protocol ------------------------------------------------------
    def __len__(self) -> int:
        """Number of images (after ``filter_empty``)."""
        return len(self._image_infos)

    def __getitem__(self, index: int) -> dict:
        """The sample at ``index``: the decoded RGB image plus its annotations."""
        sample = self.get_annotations(index)
        path = sample["meta"]["file"]
        image = read_image(path, what=f"image id {sample['meta']['image_id']} of {self.ann_file}")
        if self.with_masks and image.shape[:2] != sample["meta"]["ori_shape"]:
            raise DataError(
                f"{path}: image is {image.shape[0]}x{image.shape[1]} but {self.ann_file} says "
                f"{sample['meta']['ori_shape'][0]}x{sample['meta']['ori_shape'][1]} (height x width); "
                "masks cannot be aligned"
            )
        sample["image"] = image
        sample["meta"]["ori_shape"] = tuple(image.shape[:2])
        return sample

    def image_size(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of image ``index`` from its record in the JSON, reading no file.

        Aspect-ratio grouping (``data.group_by_aspect_ratio``) asks every image's size this way.
        """
        info = self._image_infos[index]
        return int(info["height"]), int(info["width"])

    def get_annotations(self, index: int) -> dict:
        """The sample at ``index`` without ``image``, never reading the image file.

        ``meta["ori_shape"]`` comes from the JSON's height and width.
        """
        info = self._image_infos[index]
        entry = self._annotations[info["id"]]
        height, width = int(info["height"]), int(info["width"])
        sample = {
            "boxes": entry["boxes"].copy(),
            "labels": entry["labels"].copy(),
            "iscrowd": entry["iscrowd"].copy(),
            "areas": entry["areas"].copy(),
            "meta": {
                "image_id": info["id"],
                "file": os.path.join(self.images, info["file_name"]),
                "ori_shape": (height, width),
                "index": index,
            },
        }
        if self.with_masks:
            sample["masks"] = self._decode_masks(entry["anns"], entry["boxes"], height, width)
        return sample

    def _decode_masks(self, anns: list[dict], boxes: np.ndarray, height: int, width: int) -> np.ndarray:
        masks = np.zeros((len(anns), height, width), dtype=np.uint8)
        missing = 0
        for i, ann in enumerate(anns):
            mask = decode_segmentation(ann.get("segmentation"), height, width)
            if mask is None:
                # No usable segmentation: the box is the best mask we have, and the user is told.
                missing += 1
                x1, y1, x2, y2 = np.round(boxes[i]).astype(int)
                masks[i, max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = 1
            else:
                masks[i] = mask
        if missing:
            warn(f"{self.ann_file}: {missing} annotation(s) without a usable segmentation; their box is used as mask")
        return masks

    def __repr__(self) -> str:
        return f"CocoDataset({self.ann_file!r}, images={len(self)}, classes={len(self.classes)})"


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as an H×W uint8 mask; None if unusable."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        # Polygons need 3 points; pycocotools would read a 4-number list as a box.
        polygons = [
            [float(v) for v in p]
            for p in segmentation
            if isinstance(p, (list, tuple)) and len(p) >= 6 and len(p) % 2 == 0
        ]
        if not polygons:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            counts = segmentation["counts"]
            rle = {"size": segmentation["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        return None
    mask = mask_utils.decode(rle)
    if mask.shape != (height, width):
        return None
    return mask.astype(np.uint8, copy=False)


def read_image(path: str, what: str = "") -> np.ndarray:
    """Decode an image file as H×W×3 uint8 RGB; ``DataError`` naming the file if missing or undecodable."""
    where = f" ({what})" if what else ""
    if not os.path.isfile(path):
        raise DataError(f"image file not found: {path}{where}")
    try:
        data = np.fromfile(path, dtype=np.uint8)  # fromfile + imdecode also handles non-ASCII paths
    except OSError as exc:
        raise DataError(f"cannot read image file {path}{where}: {exc}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f"cannot decode image file {path}{where}: expected a JPEG, PNG or other OpenCV-readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_json(path: str, expected: str) -> object:
    """A JSON file's content; a missing, unreadable or invalid file is a ``DataError`` naming ``expected``."""
    if not os.path.isfile(path):
        raise DataError(f"annotation file not found: {path} (expected {expected}; cwd is {os.getcwd()})")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno} (char {exc.pos}): {exc.msg}"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as a UTF-8 JSON file: {exc}") from exc


def _load_json(path: str) -> dict:
    data = read_json(path, "a COCO JSON file")
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: expected a JSON object with 'images', 'annotations', 'categories', got {type(data).__name__}"
        )
    return data


def _check_list(data: dict, key: str, path: str) -> list:
    if key not in data:
        raise DataError(
            f"{path}: missing key '{key}'; a COCO annotation file needs {', '.join(repr(k) for k in REQUIRED_KEYS)}"
        )
    if not isinstance(data[key], list):
        raise DataError(f"{path}: '{key}' must be a list, got {type(data[key]).__name__}")
    return data[key]


def _valid_box(bbox: Any) -> tuple[float, float, float, float] | None:
    """``[x, y, w, h]`` as ``(x1, y1, x2, y2)``, or None when missing, malformed, not finite or empty."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None
    return (x, y, x + w, y + h)


def _short_list(values: list, limit: int = 10) -> str:
    text = ", ".join(str(v) for v in values[:limit])
    return text + (", ..." if len(values) > limit else "")
