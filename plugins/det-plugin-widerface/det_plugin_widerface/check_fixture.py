"""A tiny WIDER FACE tree (official annotation text, images), for tests and ``sdk plugins check widerface``.

``tiny_tree`` is the fixture named in this plugin's ``[tool.detsdk.check]`` table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detsdk.testing.painted import draw, random_objects


def tiny_tree(folder: Path) -> dict:
    """Write 4 training images of faces under ``folder``; return the ``widerface`` dataset's parameters."""
    ann_file, images = random_widerface(Path(folder), count=4, seed=0)
    return {"ann_file": str(ann_file), "images": str(images)}


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
