"""A tiny Pascal VOC tree in the official VOCdevkit layout, for tests and ``sdk plugins check voc``.

``tiny_tree`` is the fixture named in this plugin's ``[tool.detsdk.check]`` table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detsdk.testing.painted import draw, random_objects


def tiny_tree(folder: Path) -> dict:
    """Write a 4-image ``VOC2007`` year under ``folder``; return the ``voc`` dataset's parameters."""
    return {"root": str(random_voc_year(Path(folder) / "VOC2007", count=4, seed=0)), "split": "trainval"}


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
