"""Write any dataset as a YOLO-format tree (Ultralytics' layout), for ``sdk data convert --to yolo``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from detsdk.errors import DataError


@attrs.frozen
class YoloWritten:
    """What ``write_yolo`` wrote: images and boxes, and the crowd regions YOLO cannot hold (left out)."""

    data_yaml: Path
    images: int
    boxes: int
    crowd_skipped: int


def write_yolo(dataset: Any, out: Path, split: str = "train") -> YoloWritten:
    """Copy ``dataset``'s images to ``out/images/<split>/``, write ``out/labels/<split>/*.txt`` and ``out/data.yaml``.

    Boxes become normalised ``class cx cy w h`` lines; crowd regions (``iscrowd``) are left out
    and counted (YOLO has no ignore regions); masks are not written (boxes only). An existing
    ``data.yaml`` keeps its other splits: converting train, then val, into one folder works.
    Image names that repeat get the image's index prefixed so no file is overwritten.
    """
    import yaml

    from detsdk.builtin.data.wrappers import annotations_of

    out = Path(out)
    images_dir, labels_dir = out / "images" / split, out / "labels" / split
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    classes = [str(c) for c in dataset.classes]
    used: set[str] = set()
    boxes_written = crowd_skipped = 0
    for index in range(len(dataset)):
        sample = annotations_of(dataset, index)
        meta = sample.get("meta", {})
        source = Path(str(meta.get("file", "")))
        if not source.is_file():
            raise DataError(f"{dataset!r} item {index}: image file '{source}' not found; cannot copy it")
        name = source.name if source.name not in used else f"{index}_{source.name}"
        used.add(name)
        shutil.copyfile(source, images_dir / name)
        height, width = (float(v) for v in meta["ori_shape"])
        boxes = np.asarray(sample.get("boxes", np.zeros((0, 4))), np.float64).reshape(-1, 4)
        labels = np.asarray(sample.get("labels", np.zeros(0)), np.int64).reshape(-1)
        crowd = np.asarray(sample.get("iscrowd", np.zeros(len(boxes))), bool).reshape(-1)
        lines = []
        for (x1, y1, x2, y2), label, is_crowd in zip(boxes, labels, crowd):
            if is_crowd:
                crowd_skipped += 1
                continue
            x1, x2 = np.clip([x1, x2], 0, width)
            y1, y2 = np.clip([y1, y2], 0, height)
            if x2 <= x1 or y2 <= y1:
                continue
            lines.append(f"{label} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                         f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
        (labels_dir / Path(name).with_suffix(".txt").name).write_text("\n".join(lines) + ("\n" if lines else ""))
        boxes_written += len(lines)
    data_yaml = out / "data.yaml"
    data = {}
    if data_yaml.is_file():
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    data.update({"path": ".", split: f"images/{split}", "names": dict(enumerate(classes))})
    temporary = data_yaml.with_name(data_yaml.name + ".tmp")
    temporary.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(temporary, data_yaml)
    return YoloWritten(data_yaml, len(dataset), boxes_written, crowd_skipped)
