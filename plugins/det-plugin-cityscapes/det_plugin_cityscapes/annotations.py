"""Instances of one frame: ids, classes, crowd flags, boxes, areas and masks from an instance image.

An instance image holds, per pixel, ``label_id * 1000 + k`` for the k-th
instance of a class, the bare ``label_id`` (< 1000) for a crowd region
(a "cargroup" polygon) and for stuff, ``0`` for unlabeled. Instances are read
in increasing id order, as MMDetection's converter reads them.
"""

from __future__ import annotations

import attrs
import cv2
import numpy as np

from det_plugin_cityscapes.labels import FIRST_INSTANCE_LABEL_ID, LABEL_IDS, name2label
from detsdk.errors import DataError, suggest

_LABEL_OF_ID = {label_id: index for index, label_id in enumerate(LABEL_IDS)}


@attrs.frozen
class Instances:
    """The evaluated instances of one frame (the 8 classes; other labels are left out)."""

    ids: np.ndarray  # int64 N: the value of each instance in the instance image
    labels: np.ndarray  # int64 N: 0-based index into CLASSES
    iscrowd: np.ndarray  # bool N: id < 1000, a group region
    boxes: np.ndarray  # float32 N×4: x1 y1 x2 y2, the mask's extent in pixels
    areas: np.ndarray  # float32 N: mask pixel counts


def read_instance_image(path: str) -> np.ndarray:
    """An ``*_instanceIds.png`` as an H×W int32 array; ``DataError`` naming the file if unreadable."""
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"cityscapes: cannot read instance image {path} (expected a 16-bit PNG of instance ids)")
    if image.ndim != 2:
        raise DataError(f"cityscapes: {path} has {image.shape[2]} channels; an instance image has one (instance ids)")
    return image.astype(np.int32)


def render_polygons(path: str) -> np.ndarray:
    """Render a ``*_polygons.json`` to an H×W int32 instance image with cityscapesscripts' ``json2instanceImg``."""
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage

    annotation = Annotation()
    try:
        annotation.fromJsonFile(path)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DataError(
            f"cityscapes: {path}: not a Cityscapes polygon file (imgHeight, imgWidth, objects with label "
            f"and polygon): {type(exc).__name__}: {exc}"
        ) from None
    for index, obj in enumerate(annotation.objects):
        if obj.deleted:
            continue
        label = obj.label
        if label not in name2label and label.endswith("group"):
            label = label[: -len("group")]  # "cargroup": a crowd of cars, as json2instanceImg reads it
        if label not in name2label:
            raise DataError(
                f"cityscapes: {path}: object {index} has unknown label {obj.label!r}"
                f"{suggest(obj.label, name2label)}; expected a name from cityscapesscripts' label table "
                "(person, rider, car, ..., or '<name>group' for a crowd)"
            )
    # createInstanceImage would sys.exit on an unknown label; every label was checked above.
    return np.asarray(createInstanceImage(annotation, "ids"), dtype=np.int32)


def _instance_pixels(instance_image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns, and per pixel the index into the sorted ids, of every pixel of an evaluated instance."""
    rows, cols = np.nonzero(instance_image >= FIRST_INSTANCE_LABEL_ID)
    ids, inverse = np.unique(instance_image[rows, cols], return_inverse=True)
    label_ids = np.where(ids >= 1000, ids // 1000, ids)
    keep = np.isin(label_ids, LABEL_IDS)
    if not keep.all():  # caravan, trailer: instances, but not evaluated
        new_index = np.cumsum(keep) - 1
        pixel_kept = keep[inverse]
        rows, cols, inverse = rows[pixel_kept], cols[pixel_kept], new_index[inverse[pixel_kept]]
        ids = ids[keep]
    return ids.astype(np.int64), rows, cols, inverse


def extract_instances(instance_image: np.ndarray) -> Instances:
    """The instances of the 8 classes in an instance image, in increasing id order."""
    ids, rows, cols, inverse = _instance_pixels(instance_image)
    boxes = np.zeros((len(ids), 4), np.float32)
    areas = np.bincount(inverse, minlength=len(ids)).astype(np.float32)
    if len(ids):
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(areas[:-1]).astype(np.int64)])
        # The extent of the pixels, as pycocotools' toBbox gives it (x2 = last column + 1).
        boxes[:, 0] = np.minimum.reduceat(cols[order], starts)
        boxes[:, 1] = np.minimum.reduceat(rows[order], starts)
        boxes[:, 2] = np.maximum.reduceat(cols[order], starts) + 1
        boxes[:, 3] = np.maximum.reduceat(rows[order], starts) + 1
    label_ids = np.where(ids >= 1000, ids // 1000, ids)
    return Instances(
        ids=ids,
        labels=np.array([_LABEL_OF_ID[int(label_id)] for label_id in label_ids], np.int64),
        iscrowd=ids < 1000,
        boxes=boxes,
        areas=areas,
    )


def instance_masks(instance_image: np.ndarray) -> np.ndarray:
    """N×H×W uint8 masks of the instances ``extract_instances`` finds, in the same order."""
    ids, rows, cols, inverse = _instance_pixels(instance_image)
    masks = np.zeros((len(ids), *instance_image.shape), np.uint8)
    masks[inverse, rows, cols] = 1
    return masks
