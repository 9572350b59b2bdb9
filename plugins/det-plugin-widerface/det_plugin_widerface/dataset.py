"""WIDER FACE: faces from the official ``wider_face_{train,val}_bbx_gt.txt`` files.

The format, one image after another::

    0--Parade/0_Parade_marchingband_1_849.jpg      file, relative to WIDER_<split>/images
    1                                              number of faces
    449 330 122 149 0 0 0 0 0 0                    x1 y1 w h blur expression illumination invalid occlusion pose

An image with no face has the count ``0`` followed by one line of zeros
(the files' quirk), which is not a face.

    >>> ds = WiderFaceDataset("data/WIDERFace/wider_face_split/wider_face_val_bbx_gt.txt",
    ...                       images="data/WIDERFace/WIDER_val/images")      # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from detsdk.builtin.data.coco import read_image
from detsdk.errors import DataError, warn

CLASSES = ["face"]


class WiderFaceDataset:
    """Samples of one WIDER FACE annotation file, in its order.

    Faces flagged ``invalid`` are kept as ignore regions (``iscrowd`` True):
    never trained on, and detections on them count neither way. Faces with
    zero width or height (a few in the train file) are dropped, with a count.
    Image sizes, which the text files lack, are read from the image headers
    the first time ``get_annotations`` needs them. ``meta["image_id"]`` is the
    file name without extension (``"0--Parade/0_Parade_marchingband_1_849"``).

    Args:
        ann_file: ``wider_face_split/wider_face_<split>_bbx_gt.txt``.
        images: the folder the file names are relative to (``WIDER_<split>/images``).
    """

    def __init__(self, ann_file: str, images: str = ""):
        self.ann_file = str(ann_file)
        self.images = str(images)
        self.classes: list[str] = list(CLASSES)
        self._records = _parse(self.ann_file)
        dropped = sum(r.pop("dropped") for r in self._records)
        if dropped:
            warn(f"{self.ann_file}: dropped {dropped} face(s) with zero width or height")
        self._shapes: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        """Number of images."""
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        """The sample at ``index``: the decoded RGB image plus its faces."""
        record = self._records[index]
        image = read_image(self._file(record), what=f"{record['name']} of {self.ann_file}")
        self._shapes[index] = tuple(image.shape[:2])
        sample = self.get_annotations(index)
        sample["image"] = image
        return sample

    def get_annotations(self, index: int) -> dict:
        """The sample at ``index`` without ``image``; the size comes from the image file's header."""
        record = self._records[index]
        if index not in self._shapes:
            self._shapes[index] = _image_size(self._file(record), record["name"], self.ann_file)
        return {
            "boxes": record["boxes"].copy(),
            "labels": np.zeros(len(record["boxes"]), dtype=np.int64),
            "iscrowd": record["iscrowd"].copy(),
            "meta": {
                "image_id": os.path.splitext(record["name"])[0],
                "file": self._file(record),
                "ori_shape": self._shapes[index],
                "index": index,
            },
        }

    def _file(self, record: dict) -> str:
        return os.path.join(self.images, record["name"])

    def __repr__(self) -> str:
        return f"WiderFaceDataset({self.ann_file!r}, images={len(self)})"


def _parse(path: str) -> list[dict]:
    """Every image record of an annotation file: name, boxes (x1 y1 x2 y2), iscrowd, dropped."""
    if not os.path.isfile(path):
        raise DataError(
            f"annotation file not found: {path} (expected wider_face_split/wider_face_<split>_bbx_gt.txt; "
            f"cwd is {os.getcwd()})"
        )
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    records, i = [], 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        name, line_no = lines[i], i + 1
        try:
            count = int(lines[i + 1])
        except (IndexError, ValueError):
            raise DataError(f"{path}:{line_no + 1}: expected the number of faces of {name}") from None
        rows = lines[i + 2 : i + 2 + count]
        i += 2 + count
        # The quirk: a count of 0 is followed by one line of zeros that is not a face.
        if count == 0 and i < len(lines) and _is_zero_row(lines[i]):
            i += 1
        if len(rows) < count:
            raise DataError(f"{path}:{line_no}: {name} announces {count} faces but the file ends after {len(rows)}")
        values = [_row(row, path, line_no + 2 + k) for k, row in enumerate(rows)]
        table = np.array(values, dtype=np.float64).reshape(-1, 10)
        x, y, w, h = table[:, 0], table[:, 1], table[:, 2], table[:, 3]
        keep = (w > 0) & (h > 0)
        records.append({
            "name": name,
            "boxes": np.stack([x, y, x + w, y + h], axis=1)[keep].astype(np.float32),
            "iscrowd": table[keep, 7] != 0,
            "dropped": int((~keep).sum()),
        })
    if not records:
        raise DataError(f"{path}: no images found (expected WIDER FACE's file / count / faces lines)")
    return records


def _row(text: str, path: str, line_no: int) -> list[float]:
    parts = text.split()
    try:
        values = [float(v) for v in parts]
    except ValueError:
        values = []
    if len(values) != 10:
        raise DataError(
            f"{path}:{line_no}: expected 10 numbers (x1 y1 w h blur expression illumination invalid occlusion pose), "
            f"got {text[:80]!r}"
        )
    return values


def _is_zero_row(text: str) -> bool:
    parts = text.split()
    return len(parts) == 10 and all(p.lstrip("-").replace(".", "", 1).isdigit() and float(p) == 0 for p in parts)


def _image_size(path: str, name: str, ann_file: str) -> tuple[int, int]:
    """(height, width) from the image file's header, without decoding it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise DataError(f"image file not found: {path} ({name} of {ann_file})") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image file {path} ({name} of {ann_file}): {exc}") from None
    return int(height), int(width)
