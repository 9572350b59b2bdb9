"""Pascal VOC: one XML file an image, listed by an ``ImageSets/Main/<split>.txt`` file.

The official layout (VOCdevkit as downloaded)::

    VOCdevkit/VOC2007/
      Annotations/000005.xml
      ImageSets/Main/trainval.txt   (one image id a line; also train, val, test)
      JPEGImages/000005.jpg

    >>> ds = VocDataset("data/VOCdevkit/VOC2007", split="test")      # doctest: +SKIP
    >>> len(ds), ds.classes[:3]                                       # doctest: +SKIP
    (4952, ['aeroplane', 'bicycle', 'bird'])
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from detsdk.builtin.data.coco import read_image
from detsdk.builtin.data.records import RecordsDataset
from detsdk.errors import DataError, RecipeError, suggest, warn

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip


class VocDataset(RecordsDataset):
    """Samples of one VOC year folder and split, every XML parsed once when the dataset is built.

    ``difficult`` objects are kept as ignore regions (``iscrowd`` True), as
    MMDetection keeps them in ``bboxes_ignore``: never trained on, and
    detections on them count neither way in evaluation. Boxes go from VOC's
    1-based inclusive pixel indices to continuous x1 y1 x2 y2 as Detectron2
    and torchvision do (``xmin - 1``, ``ymin - 1``, ``xmax``, ``ymax``);
    MMDetection 2.x keeps ``xmin``/``ymin`` as written, one pixel apart.
    ``meta["image_id"]`` is the image id of the split file (``"000005"``).

    Args:
        root: a VOC year folder, e.g. ``data/VOCdevkit/VOC2007`` (holding Annotations, ImageSets, JPEGImages).
        split: the split file ``ImageSets/Main/<split>.txt``: ``train``, ``val``, ``trainval`` or ``test``.
        class_names: the object names, in label order (VOC's 20 by default; set it for a custom
            dataset in VOC's format). An object with another name is an error naming its file.
        image_ext: the extension of the files in ``JPEGImages``.
    """

    def __init__(
        self, root: str, split: str = "trainval", class_names: list = VOC_CLASSES, image_ext: str = ".jpg"  # noqa: B006
    ):
        self.root = Path(root)
        self.split = str(split)
        if not isinstance(class_names, (list, tuple)) or not class_names or not all(isinstance(n, str) for n in class_names):
            raise RecipeError(f"voc: class_names = {class_names!r}: expected a non-empty list of names")
        self.classes: list[str] = list(class_names)
        self.image_ext = image_ext if image_ext.startswith(".") else f".{image_ext}"
        self._label_of = {name: i for i, name in enumerate(self.classes)}
        ids = _read_split(self.root, self.split)
        self._records = [self._parse(image_id) for image_id in ids]
        dropped = sum(r.pop("dropped") for r in self._records)
        if dropped:
            warn(f"{self.root}: dropped {dropped} object(s) whose box has no area (xmax < xmin or ymax < ymin)")

    def _parse(self, image_id: str) -> dict:
        path = self.root / "Annotations" / f"{image_id}.xml"
        if not path.is_file():
            raise DataError(f"{path}: annotation file not found (image id {image_id!r} of {self._split_file()})")
        try:
            tree = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise DataError(f"{path}: not valid XML: {exc}") from None
        image_file = self.root / "JPEGImages" / f"{image_id}{self.image_ext}"
        boxes, labels, difficult = [], [], []
        dropped = 0
        for index, obj in enumerate(tree.findall("object")):
            name = (obj.findtext("name") or "").strip()
            if name not in self._label_of:
                raise DataError(
                    f"{path}: object {index} is named {name!r}{suggest(name, self.classes)}; expected one of "
                    "class_names (set class_names for a dataset with other classes)"
                )
            box = obj.find("bndbox")
            try:
                x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError):
                raise DataError(
                    f"{path}: object {index} ({name}) needs a bndbox with numeric xmin, ymin, xmax, ymax"
                ) from None
            if x2 < x1 or y2 < y1:
                dropped += 1
                continue
            boxes.append((x1 - 1, y1 - 1, x2, y2))  # 1-based inclusive pixels -> continuous coordinates
            labels.append(self._label_of[name])
            difficult.append((obj.findtext("difficult") or "0").strip() not in ("0", ""))
        return {
            "image_id": image_id,
            "file": str(image_file),
            "shape": _size(tree, path, image_file),
            "boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
            "labels": np.array(labels, dtype=np.int64),
            "iscrowd": np.array(difficult, dtype=bool),
            "dropped": dropped,
        }

    def _split_file(self) -> Path:
        return self.root / "ImageSets" / "Main" / f"{self.split}.txt"

    def describe(self, index: int) -> str:
        """Errors name the VOC image id."""
        return f"VOC image {self._records[index]['image_id']}"

    def __repr__(self) -> str:
        return f"VocDataset({str(self.root)!r}, split={self.split!r}, images={len(self)})"


def _read_split(root: Path, split: str) -> list[str]:
    """The image ids of ``ImageSets/Main/<split>.txt``, with a list of the splits there when it is missing."""
    if not root.is_dir():
        raise DataError(f"VOC folder not found: {root} (expected e.g. data/VOCdevkit/VOC2007; cwd is {os.getcwd()})")
    main = root / "ImageSets" / "Main"
    path = main / f"{split}.txt"
    if not path.is_file():
        # Per-class files (aeroplane_train.txt) are not splits.
        known = sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem) if main.is_dir() else []
        raise DataError(
            f"{path}: split file not found{suggest(split, known)}; splits in {main}: {', '.join(known) or 'none'}"
        )
    ids = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{path}: lists no image ids")
    return ids


def _size(tree: ET.Element, path: Path, image_file: Path) -> tuple[int, int]:
    """(height, width) from the XML's ``size``; from the image itself when the XML has none."""
    try:
        height, width = int(float(tree.findtext("size/height"))), int(float(tree.findtext("size/width")))
        if height > 0 and width > 0:
            return height, width
    except (TypeError, ValueError):
        pass
    image = read_image(str(image_file), what=f"size of {path}, which has no <size>")
    return int(image.shape[0]), int(image.shape[1])
