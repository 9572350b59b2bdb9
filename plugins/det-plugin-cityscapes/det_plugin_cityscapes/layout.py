"""Find the frames of a split in the official Cityscapes layout, and their annotation files.

    ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_polygons.json
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from detsdk.errors import DataError, RecipeError, suggest

IMAGE_SUFFIX = "_leftImg8bit.png"
# Where the instance masks come from: the shipped instance images, or the polygons rendered.
ANNOTATION_SOURCES = ("instance_ids", "polygons")


@attrs.frozen
class Frame:
    """One image of a split and the paths of its fine annotations (which may not all exist)."""

    image: str
    city: str
    name: str  # <city>_<seq>_<frame>, the prefix every file of the frame shares
    instance_ids: str
    polygons: str
    label_ids: str

    def annotation_file(self, source: str) -> str:
        """The file ``source`` (one of ``ANNOTATION_SOURCES``) reads."""
        return self.instance_ids if source == "instance_ids" else self.polygons


def check_source(source: str) -> str:
    """``source`` if it names an annotation source, else a ``RecipeError`` with the choices."""
    if source not in ANNOTATION_SOURCES:
        raise RecipeError(
            f"cityscapes: annotations = {source!r}{suggest(str(source), ANNOTATION_SOURCES)}; "
            f"expected one of {', '.join(ANNOTATION_SOURCES)}"
        )
    return source


def find_frames(root: str | os.PathLike, split: str, source: str = "instance_ids") -> list[Frame]:
    """Every image of ``split``, sorted by path, each with its annotation file; ``DataError`` naming what is missing."""
    check_source(source)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"cityscapes: root folder not found: {root} (cwd is {os.getcwd()})")
    image_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    if not image_dir.is_dir():
        raise DataError(
            f"cityscapes: image folder not found: {image_dir} (expected leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX}; "
            "unzip leftImg8bit_trainvaltest.zip into the root)"
        )
    if not gt_dir.is_dir():
        raise DataError(
            f"cityscapes: annotation folder not found: {gt_dir} (expected gtFine/{split}/<city>/"
            "*_gtFine_instanceIds.png and *_gtFine_polygons.json; unzip gtFine_trainvaltest.zip into the root)"
        )
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise DataError(f"cityscapes: no images in {image_dir} (expected <city>/*{IMAGE_SUFFIX})")
    frames = []
    for image in images:
        name = image.name[: -len(IMAGE_SUFFIX)]
        base = gt_dir / image.parent.name / name
        frames.append(
            Frame(
                image=str(image),
                city=image.parent.name,
                name=name,
                instance_ids=f"{base}_gtFine_instanceIds.png",
                polygons=f"{base}_gtFine_polygons.json",
                label_ids=f"{base}_gtFine_labelIds.png",
            )
        )
    missing = [frame for frame in frames if not os.path.isfile(frame.annotation_file(source))]
    if missing:
        raise DataError(
            f"cityscapes: {missing[0].image} has no annotation file {missing[0].annotation_file(source)} "
            f"({len(missing)} of {len(frames)} images in {image_dir} lack one)"
        )
    return frames


def available_splits(root: str | os.PathLike) -> list[str]:
    """The split folders under ``ROOT/leftImg8bit``, sorted."""
    image_root = Path(root) / "leftImg8bit"
    if not image_root.is_dir():
        raise DataError(f"cityscapes: image folder not found: {image_root} (expected leftImg8bit/<split>/<city>/)")
    return sorted(p.name for p in image_root.iterdir() if p.is_dir())
