"""A tiny Cityscapes tree in the official layout, for tests and ``sdk plugins check cityscapes``.

``make_cityscapes_tree`` writes two cities of 64x128 frames: polygons as
``*_gtFine_polygons.json``, rendered to ``instanceIds``/``labelIds`` PNGs by
cityscapesscripts' own ``json2instanceImg`` / ``json2labelImg`` renderers, and
images painted in each label's Cityscapes colour. ``tiny_tree`` is the fixture
named in this plugin's ``[tool.detsdk.check]`` table.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

HEIGHT, WIDTH = 64, 128
# Four non-overlapping column slots, one object each: boxes are exactly the drawn rectangles.
SLOTS = [(2, 27), (34, 59), (66, 91), (98, 123)]
FRAMES = {
    "train": {"aachen": 2, "bochum": 2},
    "val": {"aachen": 2, "bochum": 1},
}
OBJECTS = ["car", "person", "cargroup", "bicycle", "rider", "car", "truck"]


def make_cityscapes_tree(root: Path, frames: dict = FRAMES, seed: int = 0) -> dict:
    """Write the tree; return ``{image path: [(label, (x1, y1, x2, y2), crowd), ...]}`` for the 8 classes."""
    from cityscapesscripts.helpers.labels import name2label

    rng = np.random.default_rng(seed)
    expected = {}
    for split, cities in frames.items():
        for city, count in cities.items():
            image_dir = root / "leftImg8bit" / split / city
            gt_dir = root / "gtFine" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            for frame in range(count):
                name = f"{city}_{frame:06d}_{19 + frame:06d}"
                # Stuff, then void (ignored in evaluation), then the instances.
                objects = [
                    {"label": label, "polygon": [[0, top], [WIDTH - 1, top], [WIDTH - 1, bottom], [0, bottom]]}
                    for label, top, bottom in (("sky", 0, 9), ("road", 40, HEIGHT - 1), ("ego vehicle", 60, HEIGHT - 1))
                ]
                instances = []
                for slot_x1, slot_x2 in SLOTS:
                    label = OBJECTS[int(rng.integers(len(OBJECTS)))]
                    width, height = int(rng.integers(12, slot_x2 - slot_x1)), int(rng.integers(12, 30))
                    x1 = int(rng.integers(slot_x1, slot_x2 - width + 1))
                    y1 = int(rng.integers(12, 58 - height))
                    x2, y2 = x1 + width - 1, y1 + height - 1
                    objects.append({"label": label, "polygon": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]})
                    crowd = label.endswith("group")
                    instances.append((label[: -len("group")] if crowd else label, (x1, y1, x2 + 1, y2 + 1), crowd))
                polygons = gt_dir / f"{name}_gtFine_polygons.json"
                polygons.write_text(json.dumps({"imgHeight": HEIGHT, "imgWidth": WIDTH, "objects": objects}))
                _render(polygons, gt_dir / f"{name}_gtFine_instanceIds.png", gt_dir / f"{name}_gtFine_labelIds.png")
                image_path = image_dir / f"{name}_leftImg8bit.png"
                cv2.imwrite(str(image_path), _paint(gt_dir / f"{name}_gtFine_labelIds.png", name2label, rng))
                expected[str(image_path)] = instances
    return expected


def _render(polygons: Path, instance_ids: Path, label_ids: Path) -> None:
    """``json2instanceImg`` and ``json2labelImg``, saving 16/8-bit PNGs (their own save fails with Pillow 13)."""
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import createLabelImage

    annotation = Annotation()
    annotation.fromJsonFile(str(polygons))
    createInstanceImage(annotation, "ids").convert("I;16").save(instance_ids)
    createLabelImage(annotation, "ids").save(label_ids)


def _paint(label_ids: Path, name2label, rng) -> np.ndarray:
    """An image in each pixel's Cityscapes label colour plus noise (BGR, for cv2.imwrite)."""
    ids = cv2.imread(str(label_ids), cv2.IMREAD_UNCHANGED)
    colours = np.zeros((256, 3), np.uint8)
    for label in name2label.values():
        if 0 <= label.id < 256:
            colours[label.id] = label.color
    image = colours[ids].astype(np.int16) + rng.integers(-10, 11, (*ids.shape, 3))
    return np.clip(image, 0, 255).astype(np.uint8)[..., ::-1]


def tiny_tree(folder: Path) -> dict:
    """Write a two-city ``train`` split under ``folder``; return the ``cityscapes`` dataset's parameters."""
    root = Path(folder) / "cityscapes"
    make_cityscapes_tree(root, {"train": {"aachen": 2, "bochum": 1}})
    return {"root": str(root), "split": "train"}
