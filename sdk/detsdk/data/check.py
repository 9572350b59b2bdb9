"""``sdk data check``: find what is wrong with a dataset, item by item, and list it all.

Every image must decode (and match the size its annotations declare), every
box must be finite, have an area and lie inside its image (1 px of slack),
every label must be one of the declared classes, and neither boxes within an
image nor images (same file, or the same pixels under another name) may
repeat. Each item's error is caught and recorded, so one run lists every
problem, grouped by file.

Two sources: any dataset (``check_dataset``: its samples, ``meta["file"]``
naming each item's file), and, for COCO files, the raw JSON
(``check_coco_file``), which also sees what the ``coco`` loader drops or
refuses (boxes without area, unknown ``category_id``).

    >>> report = check_dataset(dataset)                          # doctest: +SKIP
    >>> report.ok, report.by_file()                              # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import attrs
import cv2
import numpy as np

from detsdk.builtin.data.coco import read_json
from detsdk.errors import DataError

BORDER_SLACK = 1.0  # pixels a box may reach past the image border (rounding in annotation tools)


@attrs.frozen
class Problem:
    """One thing wrong with one file (or with the annotation file, for problems of no image)."""

    file: str
    message: str


@attrs.define
class CheckReport:
    """What ``check_*`` found: the problems, and per-class counts of what is valid."""

    source: str
    classes: list[str]
    num_images: int = 0
    problems: list[Problem] = attrs.Factory(list)
    boxes: Counter = attrs.Factory(Counter)  # label -> boxes that are not crowd regions
    crowd: Counter = attrs.Factory(Counter)  # label -> crowd (ignore) regions
    images_with: Counter = attrs.Factory(Counter)  # label -> images holding at least one box of it

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def add(self, file: str, message: str) -> None:
        """Record a problem with ``file``."""
        self.problems.append(Problem(str(file), message))

    def by_file(self) -> dict[str, list[str]]:
        """Problems grouped by file, in the order they were found."""
        grouped: dict[str, list[str]] = defaultdict(list)
        for problem in self.problems:
            grouped[problem.file].append(problem.message)
        return dict(grouped)

    def summary_table(self) -> str:
        """A per-class table: images holding the class, boxes, crowd regions."""
        width = max([len("class"), *(len(c) for c in self.classes)])
        lines = [f"{'class':<{width}}  {'images':>7}  {'boxes':>7}  {'crowd':>6}"]
        for label, name in enumerate(self.classes):
            lines.append(
                f"{name:<{width}}  {self.images_with[label]:>7}  {self.boxes[label]:>7}  {self.crowd[label]:>6}"
            )
        lines.append(
            f"{'total':<{width}}  {self.num_images:>7}  {sum(self.boxes.values()):>7}  {sum(self.crowd.values()):>6}"
        )
        return "\n".join(lines)

    def class_count_note(self) -> str:
        """What ``num_classes = "auto"`` will count, and the classes that have no annotation at all."""
        unused = [name for label, name in enumerate(self.classes) if not self.boxes[label] and not self.crowd[label]]
        note = f'num_classes = "auto" will count {len(self.classes)} classes'
        if unused:
            shown = ", ".join(repr(name) for name in unused[:10]) + (", ..." if len(unused) > 10 else "")
            note += f"; {len(unused)} of them have no annotations: {shown}"
        return note


class _Duplicates:
    """Remembers files and pixel hashes seen so far, to name the first of each repeat."""

    def __init__(self):
        self.files: dict[str, int] = {}
        self.pixels: dict[str, str] = {}

    def file(self, path: str, index: int) -> str | None:
        first = self.files.setdefault(os.path.normpath(path), index)
        return None if first == index else f"listed more than once (items {first} and {index})"

    def image(self, path: str, image: np.ndarray) -> str | None:
        digest = hashlib.blake2b(image.tobytes(), digest_size=16)
        digest.update(str(image.shape).encode())
        first = self.pixels.setdefault(digest.hexdigest(), path)
        return None if os.path.normpath(first) == os.path.normpath(path) else f"same pixels as {first}"


def check_objects(
    report: CheckReport,
    file: str,
    boxes: np.ndarray,
    labels: np.ndarray,
    iscrowd: np.ndarray,
    image_shape: tuple[int, int] | None,
    names: list[str],
) -> None:
    """Check one image's boxes and labels and count the valid ones per class.

    ``names`` says how to call each object in messages (``box 2``, ``annotation 17``).
    A label of -1 stands for one the caller already reported as unknown.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    valid = np.zeros(len(boxes), dtype=bool)
    for j, (box, label) in enumerate(zip(boxes, labels)):
        shown = "[" + ", ".join(f"{v:g}" for v in box) + "]"
        if not np.isfinite(box).all():
            report.add(file, f"{names[j]}: box {shown} is not finite")
        elif box[2] <= box[0] or box[3] <= box[1]:
            report.add(file, f"{names[j]}: box {shown} has no area (needs x2 > x1 and y2 > y1)")
        elif image_shape is not None and (
            box[0] < -BORDER_SLACK or box[1] < -BORDER_SLACK
            or box[2] > image_shape[1] + BORDER_SLACK or box[3] > image_shape[0] + BORDER_SLACK
        ):
            report.add(file, f"{names[j]}: box {shown} is outside the {image_shape[1]}x{image_shape[0]} image (w x h)")
        else:
            valid[j] = label >= 0
        if label >= len(report.classes) or label < -1:
            report.add(file, f"{names[j]}: label {label} is not one of the {len(report.classes)} declared classes")
            valid[j] = False
    rounded = np.round(np.where(np.isfinite(boxes), boxes, 0), 1)
    seen: dict[tuple, int] = {}
    for j in np.flatnonzero(valid):
        key = (int(labels[j]), *rounded[j])
        if key in seen:
            report.add(file, f"{names[j]}: duplicates {names[seen[key]]} (same class and box)")
            valid[j] = False
        else:
            seen[key] = j
    crowd = np.asarray(iscrowd, dtype=bool).reshape(-1) if iscrowd is not None else np.zeros(len(boxes), bool)
    report.boxes.update(labels[valid & ~crowd].tolist())
    report.crowd.update(labels[valid & crowd].tolist())
    report.images_with.update(set(labels[valid & ~crowd].tolist()))


def check_dataset(dataset: Any, source: str = "dataset") -> CheckReport:
    """Check every item of a dataset (``dataset[i]``; ``get_annotations(i)`` when the image fails)."""
    report = CheckReport(source=source, classes=[str(c) for c in dataset.classes], num_images=len(dataset))
    duplicates = _Duplicates()
    for index in range(len(dataset)):
        file, declared, sample, image = f"item {index}", None, None, None
        try:
            if hasattr(dataset, "get_annotations"):  # what the annotations say, before reading the image
                sample = dataset.get_annotations(index)
                file = str(sample.get("meta", {}).get("file") or file)
                declared = sample.get("meta", {}).get("ori_shape")
            loaded = dataset[index]
            file = str(loaded.get("meta", {}).get("file") or file)
            sample, image = loaded, loaded["image"]
        except Exception as exc:  # noqa: BLE001 (a check lists every item's failure, whatever it is)
            report.add(file, _describe(exc))
        if sample is None:
            continue
        repeated = duplicates.file(file, index) if file != f"item {index}" else None
        if repeated:
            report.add(file, repeated)
        shape = tuple(declared) if declared is not None else None
        if image is not None:
            if shape is not None and tuple(image.shape[:2]) != shape:
                report.add(file, f"image is {image.shape[1]}x{image.shape[0]} (w x h) but its annotations declare "
                                 f"{shape[1]}x{shape[0]}")
            shape = tuple(image.shape[:2])
            same = None if repeated else duplicates.image(file, image)
            if same:
                report.add(file, same)
        n = len(np.asarray(sample.get("boxes", np.zeros((0, 4)))).reshape(-1, 4))
        check_objects(
            report, file, sample.get("boxes", np.zeros((0, 4))), sample.get("labels", np.zeros(0)),
            sample.get("iscrowd"), shape, [f"box {j}" for j in range(n)],
        )
    return report


def check_coco_file(ann_file: str, images: str = "") -> CheckReport:
    """Check a COCO annotation file and its images, annotation by annotation.

    Unlike the ``coco`` dataset, nothing is dropped or refused first: boxes
    without area and annotations of unknown categories are reported with
    their image's file and annotation id.
    """
    data = _read_coco(ann_file)
    categories = sorted(
        (c for c in data["categories"] if isinstance(c, dict) and "id" in c and "name" in c), key=lambda c: c["id"]
    )
    label_of = {c["id"]: i for i, c in enumerate(categories)}
    report = CheckReport(source=f"COCO file {ann_file}", classes=[str(c["name"]) for c in categories])
    known_ids = ", ".join(str(c["id"]) for c in categories[:10]) + (", ..." if len(categories) > 10 else "")
    infos: dict[Any, dict] = {}
    for k, info in enumerate(data["images"]):
        missing = [key for key in ("id", "file_name", "height", "width") if not isinstance(info, dict) or key not in info]
        if missing:
            report.add(ann_file, f"images[{k}]: lacks {', '.join(missing)}")
        elif info["id"] in infos:
            report.add(os.path.join(images, str(info["file_name"])), f"image id {info['id']} is used twice")
        else:
            infos[info["id"]] = info
    per_image: dict[Any, list[dict]] = defaultdict(list)
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or ann.get("image_id") not in infos:
            where = ann.get("id", f"annotations[{k}]") if isinstance(ann, dict) else f"annotations[{k}]"
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            report.add(ann_file, f"annotation {where}: image_id {image_id!r} is not in 'images'")
        else:
            per_image[ann["image_id"]].append(ann)
    report.num_images = len(infos)
    duplicates = _Duplicates()
    for index, (image_id, info) in enumerate(infos.items()):
        file = os.path.join(images, str(info["file_name"]))
        repeated = duplicates.file(file, index)
        if repeated:
            report.add(file, repeated)
        image = _open_image(report, file)
        shape = (int(info["height"]), int(info["width"]))
        if image is not None:
            if image.shape[:2] != shape:
                report.add(file, f"image is {image.shape[1]}x{image.shape[0]} (w x h) but the file declares "
                                 f"{shape[1]}x{shape[0]}")
            shape = image.shape[:2]
            same = None if repeated else duplicates.image(file, image)
            if same:
                report.add(file, same)
        anns = per_image[image_id]
        names = [f"annotation {a.get('id', '?')}" for a in anns]
        boxes, labels = np.zeros((len(anns), 4)), np.full(len(anns), -1, dtype=np.int64)
        keep = np.ones(len(anns), dtype=bool)  # False: a malformed bbox, reported here
        for j, ann in enumerate(anns):
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
                report.add(file, f"{names[j]}: bbox = {bbox!r} is not [x, y, width, height]")
                keep[j] = False
            else:
                x, y, w, h = (float(v) for v in bbox)
                boxes[j] = (x, y, x + w, y + h)
            if ann.get("category_id") in label_of:
                labels[j] = label_of[ann["category_id"]]
            else:
                report.add(file, f"{names[j]}: category_id {ann.get('category_id')!r} is not in categories ({known_ids})")
        iscrowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        check_objects(report, file, boxes[keep], labels[keep], iscrowd[keep], tuple(shape),
                      [n for n, k in zip(names, keep) if k])
    return report


def _read_coco(path: str) -> dict:
    data = read_json(path, "a COCO JSON file")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise DataError(f"{path}: expected a COCO object with 'images', 'annotations' and 'categories' lists")
    return data


def _open_image(report: CheckReport, file: str) -> np.ndarray | None:
    """Decode ``file`` (BGR is fine: only shape and pixels' identity matter), or record why not."""
    if not os.path.isfile(file):
        report.add(file, "image file not found")
        return None
    data = np.fromfile(file, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        report.add(file, "cannot decode the image (not an image file, or corrupt)")
    return image


def _describe(exc: Exception) -> str:
    from detsdk.errors import DetSDKError

    return str(exc) if isinstance(exc, DetSDKError) else f"{type(exc).__name__}: {exc}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_split(spec: dict, where: str, build_dataset: Callable[[dict, str], Any]) -> CheckReport:
    """Check the dataset of a recipe's ``data.<split>`` table (``where`` names it).

    A ``coco``-family dataset with an ``ann_file`` is checked from its raw JSON
    (the generic ``classes``/``filter_empty``/``min_size`` keys are then not
    applied); any other dataset is built with ``build_dataset(spec, where)`` (the
    caller's, e.g. ``detsdk.engine.build.build_dataset``) and checked sample by
    sample (one copy of a ``repeat`` dataset).
    """
    from detsdk.builtin.data.coco import CocoDataset
    from detsdk.builtin.data.wrappers import RepeatDataset
    from detsdk.plugins import get_registry

    factory = get_registry().get("dataset", spec["type"], where=f"{where}.type").load()
    if "ann_file" in spec and isinstance(factory, type) and issubclass(factory, CocoDataset):
        return check_coco_file(str(spec["ann_file"]), str(spec.get("images", "")))
    dataset = build_dataset(spec, where)
    while isinstance(dataset, RepeatDataset):  # its repeats are wanted, not duplicates: check one copy
        dataset = dataset.dataset
    return check_dataset(dataset, source=f"dataset {spec['type']}")
