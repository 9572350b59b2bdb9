"""YOLO-format datasets (Ultralytics' layout): a ``data.yaml``, ``images/`` and one ``labels/*.txt`` per image.

    dataset/
      data.yaml            path: .   train: images/train   val: images/val   names: {0: cat, 1: dog}
      images/train/a.jpg
      labels/train/a.txt   one object a line: "class cx cy w h", normalised to [0, 1]
                           or a polygon: "class x1 y1 x2 y2 x3 y3 ..." (normalised; box = its bounds)

As Ultralytics: a split is a folder of images, a ``.txt`` file listing image paths, or a
list of those, relative to ``path`` (itself relative to the YAML file); ``names`` is a list
or an ``{index: name}`` table; an image's labels are at the same path with the last
``images`` folder replaced by ``labels`` and a ``.txt`` suffix; an image without a label
file has no objects. The YAML is read with ``yaml.safe_load`` (nothing in it is run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from detsdk.builtin.data.records import RecordsDataset
from detsdk.errors import DataError, RecipeError, warn

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")


def read_data_yaml(path: str) -> dict[str, Any]:
    """The parsed ``data.yaml`` (a mapping), or a ``DataError`` naming the file."""
    import yaml

    if not os.path.isfile(path):
        raise DataError(f"yolo: data.yaml '{path}' does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise DataError(f"yolo: {path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with 'names' and 'train'/'val' entries")
    return data


def class_names(data: dict, path: str) -> list[str]:
    """``names`` as a list in label order (a list, or an ``{index: name}`` mapping with indexes 0..K-1)."""
    names = data.get("names")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise DataError(f"{path}: names: expected indexes 0..{len(names) - 1}, got {sorted(names)}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DataError(f"{path}: names: expected a list of class names or a {{0: name, ...}} mapping")
    return [str(n) for n in names]


def image_files(entry: Any, root: Path, where: str) -> list[Path]:
    """The images a split names: folders (searched recursively), ``.txt`` lists of paths, or a list of those."""
    entries = entry if isinstance(entry, list) else [entry]
    files: list[Path] = []
    for item in entries:
        location = Path(str(item))
        location = location if location.is_absolute() else root / location
        if location.is_dir():
            files += sorted(p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif location.is_file() and location.suffix == ".txt":
            for line in location.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    listed = Path(line.strip())
                    files.append(listed if listed.is_absolute() else (location.parent / listed))
        else:
            raise DataError(f"{where}: '{location}' is neither a folder of images nor a .txt list of images")
    return files


def label_file(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, the suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def parse_label_file(path: Path, num_classes: int) -> tuple[list[tuple[int, np.ndarray]], list[str]]:
    """Objects ``(class, normalised xy points)`` of a label file (a box gives its four corners), and
    the problems found, each ``"file:line: what"``."""
    objects, problems = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{path}:{number}"
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            problems.append(f"{where}: expected numbers, got {line.strip()!r}")
            continue
        if not values[0].is_integer() or not 0 <= values[0] < num_classes:
            problems.append(f"{where}: class {tokens[0]} is not an integer in 0..{num_classes - 1}")
            continue
        coords = np.array(values[1:], np.float64)
        if len(coords) == 4:
            cx, cy, w, h = coords
            if w <= 0 or h <= 0:
                problems.append(f"{where}: width and height must be > 0, got {w:g} {h:g}")
                continue
            points = np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2],
                               [cx - w / 2, cy + h / 2]])
        elif len(coords) >= 6 and len(coords) % 2 == 0:
            points = coords.reshape(-1, 2)
        else:
            problems.append(
                f"{where}: expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', "
                f"got {len(tokens)} values"
            )
            continue
        if not np.isfinite(points).all() or points.min() < 0 or points.max() > 1:
            problems.append(f"{where}: coordinates must be normalised to [0, 1], got {line.strip()!r}")
            continue
        objects.append((int(values[0]), points))
    return objects, problems


class YoloDataset(RecordsDataset):
    """Samples of one split of a YOLO-format dataset.

    Args:
        data_yaml: the ``data.yaml`` file.
        split: ``"train"``, ``"val"`` or ``"test"``: which entry of the YAML to read.
        with_masks: also give ``masks``: polygons filled, box-only objects as their rectangle.
        on_error: ``"raise"``: a malformed label line is an error naming its file and line;
            ``"skip"``: such lines are dropped, with one warning giving their count and the first.

    Boxes are in pixels (the image size is read from the file's header, not by decoding it).
    ``meta["image_id"]`` is the image's position in the split plus one.
    """

    def __init__(
        self,
        data_yaml: str,
        split: Literal["train", "val", "test"] = "train",
        with_masks: bool = False,
        on_error: Literal["raise", "skip"] = "raise",
    ):
        if split not in ("train", "val", "test"):
            raise RecipeError(f"dataset yolo: split = {split!r}: expected 'train', 'val' or 'test'")
        if on_error not in ("raise", "skip"):
            raise RecipeError(f"dataset yolo: on_error = {on_error!r}: expected 'raise' or 'skip'")
        self.data_yaml = str(data_yaml)
        self.split = split
        self.with_masks = with_masks
        data = read_data_yaml(self.data_yaml)
        self.classes = class_names(data, self.data_yaml)
        if not data.get(split):
            raise DataError(f"{self.data_yaml}: no '{split}' entry (the split's images)")
        base = Path(self.data_yaml).parent
        root = Path(str(data.get("path") or "."))
        root = root if root.is_absolute() else base / root
        images = image_files(data[split], root, f"{self.data_yaml}: {split}")
        if not images:
            raise DataError(f"{self.data_yaml}: {split}: no images found")
        problems: list[str] = []
        self._objects: list[list[tuple[int, np.ndarray]]] = []
        self._records = []
        for index, image in enumerate(images):
            labels = label_file(image)
            objects, found = parse_label_file(labels, len(self.classes)) if labels.is_file() else ([], [])
            problems += found
            self._objects.append(objects)
            self._records.append({"image_id": index + 1, "file": str(image), "shape": None})
        if problems and on_error == "raise":
            more = f" (and {len(problems) - 1} more malformed lines)" if len(problems) > 1 else ""
            raise DataError(f"{problems[0]}{more}; fix them or set on_error = \"skip\"")
        if problems:
            warn(f"dataset yolo: skipped {len(problems)} malformed label lines, the first: {problems[0]}")

    def describe(self, index: int) -> str:
        """The image file of item ``index``."""
        return f"{self.data_yaml}: {self._records[index]['file']}"

    def _shape(self, index: int) -> tuple[int, int]:
        record = self._records[index]
        if record["shape"] is None:
            from PIL import Image

            try:
                with Image.open(record["file"]) as image:
                    width, height = image.size
            except (OSError, ValueError) as exc:
                raise DataError(f"{self.describe(index)}: cannot read the image ({exc})") from exc
            record["shape"] = (height, width)
        return record["shape"]

    def get_annotations(self, index: int) -> dict:
        """Boxes (pixels), labels, ``iscrowd`` (all False) and, with ``with_masks``, masks; no image decoded."""
        height, width = self._shape(index)
        objects = self._objects[index]
        scale = np.array([width, height], np.float64)
        pixel_points = [points * scale for _, points in objects]
        boxes = np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in pixel_points],
                         np.float32).reshape(-1, 4)
        record = self._records[index]
        sample = {
            "boxes": boxes,
            "labels": np.array([label for label, _ in objects], np.int64),
            "iscrowd": np.zeros(len(objects), bool),
            "meta": {
                "image_id": record["image_id"], "file": record["file"], "ori_shape": (height, width), "index": index,
            },
        }
        if self.with_masks:
            masks = np.zeros((len(objects), height, width), np.uint8)
            for mask, points in zip(masks, pixel_points):
                cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
            sample["masks"] = masks
        return sample

    def __repr__(self) -> str:
        return f"YoloDataset({self.data_yaml!r}, split={self.split!r})"
