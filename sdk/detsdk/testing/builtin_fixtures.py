"""Small dataset trees for the built-in datasets, for tests and ``sdk plugins check detsdk``.

The functions named by the ``[tool.detsdk.check]`` table in det-sdk's
``pyproject.toml`` take a temporary folder and return the dataset's parameters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from detsdk.testing.painted import draw, random_objects


def coco_files(folder: Path) -> dict:
    """A 4-image shapes set written as COCO files; the ``coco`` dataset's parameters."""
    from detsdk.builtin.data.shapes import ShapesDataset

    shapes = ShapesDataset(num_images=4, image_size=64, cache_dir=str(folder))
    return {"ann_file": shapes.ann_file, "images": shapes.images}


def middle_file(folder: Path) -> dict:
    """A 4-image middle-format file with its images; the ``middle`` dataset's parameters."""
    return {"ann_file": str(random_middle(Path(folder), count=4, seed=0)), "class_names": ["a", "b"],
            "images": str(Path(folder) / "img")}


def one_shapes_dataset(folder: Path) -> dict:
    """``dataset`` for a wrapper (``repeat``): a 4-image shapes set."""
    from detsdk.builtin.data.shapes import ShapesDataset

    return {"dataset": ShapesDataset(num_images=4, image_size=64, cache_dir=str(folder))}


def yolo_tree(folder: Path) -> dict:
    """A 4-image shapes set written in the Ultralytics layout (``sdk data convert --to yolo``); ``yolo``'s parameters."""
    from detsdk.builtin.data.shapes import ShapesDataset
    from detsdk.builtin.data.yolo_writer import write_yolo

    shapes = ShapesDataset(num_images=4, image_size=64, cache_dir=str(Path(folder) / "shapes"))
    return {"data_yaml": str(write_yolo(shapes, Path(folder) / "yolo", "train").data_yaml)}


def two_shapes_datasets(folder: Path) -> dict:
    """``datasets`` for ``concat``: two shapes sets of 2 and 3 images."""
    from detsdk.builtin.data.shapes import ShapesDataset

    return {"datasets": [ShapesDataset(num_images=n, image_size=64, cache_dir=str(folder)) for n in (2, 3)]}


def random_middle(folder: Path, count: int, seed: int, num_classes: int = 2) -> Path:
    """``ann.json`` in the middle format and ``img/``; image 0 also has an ignore box with its label."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(count):
        objects = random_objects(rng, int(rng.integers(1, 4)), num_classes)
        draw(folder / "img" / f"{i}.png", (64, 64), [o[1:] for o in objects], [o[0] for o in objects])
        ann = {"bboxes": [list(map(float, o[1:])) for o in objects], "labels": [o[0] for o in objects]}
        if i == 0:
            ann.update(bboxes_ignore=[[50.0, 50.0, 60.0, 60.0]], labels_ignore=[1])
        entries.append({"filename": f"{i}.png", "width": 64, "height": 64, "ann": ann})
    path = folder / "ann.json"
    path.write_text(json.dumps(entries))
    return path
