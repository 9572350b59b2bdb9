"""Tiny dataset trees in official formats (VOC XML, WIDER FACE text, middle-format JSON) for tests.

Each object is drawn as a solid rectangle on a dark image, so a detector has
something to learn and boxes can be checked against pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

COLOURS = [(230, 40, 40), (40, 230, 40), (40, 40, 230), (230, 230, 40)]


def draw(path: Path, size: tuple[int, int], boxes: list[tuple[float, float, float, float]], labels: list[int]) -> None:
    """A ``size`` (h, w) image with each x1 y1 x2 y2 box filled in its label's colour."""
    image = np.full((*size, 3), 20, np.uint8)
    for (x1, y1, x2, y2), label in zip(boxes, labels):
        image[int(y1) : int(y2), int(x1) : int(x2)] = COLOURS[label % len(COLOURS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def random_objects(rng: np.random.Generator, count: int, num_classes: int, size: int = 64) -> list[tuple]:
    """``count`` (label, x1, y1, x2, y2) boxes of 14-30 px inside a ``size`` square."""
    objects = []
    for _ in range(count):
        w, h = rng.integers(14, 30, size=2)
        x1, y1 = rng.integers(0, size - w), rng.integers(0, size - h)
        objects.append((int(rng.integers(num_classes)), int(x1), int(y1), int(x1 + w), int(y1 + h)))
    return objects


# -- Pascal VOC ---------------------------------------------------------------------


def voc_xml(image_id: str, size: tuple[int, int], objects: list[dict]) -> str:
    """An annotation file as the VOC devkit writes it (1-based inclusive pixel indices)."""
    parts = [
        f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>",
        f"<size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>",
    ]
    for obj in objects:
        parts.append(
            f"<object><name>{obj['name']}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{int(obj.get('difficult', False))}</difficult><bndbox>"
            f"<xmin>{obj['xmin']}</xmin><ymin>{obj['ymin']}</ymin><xmax>{obj['xmax']}</xmax><ymax>{obj['ymax']}</ymax>"
            "</bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def write_voc_year(
    year_dir: Path, images: dict[str, list[dict]], splits: dict[str, list[str]], size: tuple[int, int] = (64, 64)
) -> Path:
    """``VOC<year>/`` with Annotations, ImageSets/Main/<split>.txt and JPEGImages.

    ``images`` maps an image id to its objects: dicts with name, xmin, ymin, xmax, ymax, difficult.
    """
    from det_plugin_voc.dataset import VOC_CLASSES

    (year_dir / "Annotations").mkdir(parents=True, exist_ok=True)
    (year_dir / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for image_id, objects in images.items():
        (year_dir / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, size, objects))
        boxes = [(o["xmin"] - 1, o["ymin"] - 1, o["xmax"], o["ymax"]) for o in objects]
        labels = [VOC_CLASSES.index(o["name"]) if o["name"] in VOC_CLASSES else 0 for o in objects]
        draw(year_dir / "JPEGImages" / f"{image_id}.jpg", size, boxes, labels)
    for split, ids in splits.items():
        (year_dir / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    # A per-class file, as the devkit has: not a split.
    (year_dir / "ImageSets" / "Main" / "cat_trainval.txt").write_text("")
    return year_dir


def random_voc_year(year_dir: Path, count: int, seed: int, names=("cat", "dog")) -> Path:
    """``count`` images of 1-3 objects named from ``names``; the first object of every third image is difficult."""
    rng = np.random.default_rng(seed)
    images = {}
    for i in range(count):
        objects = []
        for k, (label, x1, y1, x2, y2) in enumerate(random_objects(rng, int(rng.integers(1, 4)), len(names))):
            objects.append({"name": names[label], "xmin": x1 + 1, "ymin": y1 + 1, "xmax": x2, "ymax": y2,
                            "difficult": k == 0 and i % 3 == 0})
        images[f"{seed:02d}{i:04d}"] = objects
    ids = list(images)
    return write_voc_year(year_dir, images, {"trainval": ids, "test": ids[: max(2, count // 2)]})


# -- WIDER FACE ---------------------------------------------------------------------


def write_widerface(root: Path, images: dict[str, list[tuple]], split: str = "train", size=(64, 64)) -> tuple[Path, Path]:
    """``wider_face_split/wider_face_<split>_bbx_gt.txt`` and ``WIDER_<split>/images``.

    ``images`` maps ``event/name.jpg`` to faces ``(x, y, w, h, invalid)``; an image with no
    face gets the official count-0 quirk (a line of zeros after the count).
    """
    lines = []
    for name, faces in images.items():
        lines.append(name)
        lines.append(str(len(faces)))
        for x, y, w, h, invalid in faces:
            lines.append(f"{x} {y} {w} {h} 0 0 0 {int(invalid)} 0 0 ")
        if not faces:
            lines.append("0 0 0 0 0 0 0 0 0 0 ")
        draw(root / f"WIDER_{split}" / "images" / name, size, [(x, y, x + w, y + h) for x, y, w, h, _ in faces],
             [0] * len(faces))
    ann_file = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text("\n".join(lines) + "\n")
    return ann_file, root / f"WIDER_{split}" / "images"


def random_widerface(root: Path, count: int, seed: int, split: str = "train") -> tuple[Path, Path]:
    """``count`` images of 1-3 faces in two events; every fourth image has an invalid face, image 1 has none."""
    rng = np.random.default_rng(seed)
    images = {}
    for i in range(count):
        faces = [(x1, y1, x2 - x1, y2 - y1, k == 0 and i % 4 == 0)
                 for k, (_, x1, y1, x2, y2) in enumerate(random_objects(rng, int(rng.integers(1, 4)), 1))]
        event = "0--Parade" if i % 2 else "1--Handshaking"
        images[f"{event}/{event[3:]}_{i}.jpg"] = [] if i == 1 else faces
    return write_widerface(root, images, split)


# -- middle format ------------------------------------------------------------------


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
