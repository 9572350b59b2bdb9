"""Cityscapes to COCO-format JSON, one file per split, as MMDetection's ``cityscapes.py`` converter writes it.

    >>> convert_to_coco("data/cityscapes", "data/cityscapes/annotations")  # doctest: +SKIP
    [PosixPath('data/cityscapes/annotations/instancesonly_filtered_gtFine_train.json'), ...]

Each split becomes ``instancesonly_filtered_gtFine_<split>.json``: images
(``file_name`` = ``<city>/<name>_leftImg8bit.png`` relative to
``leftImg8bit/<split>``, ``segm_file``), one annotation per instance of the
8 classes with its RLE mask, box from the mask, pixel area and ``iscrowd``
(instance id below 1000), and categories with Cityscapes label ids. Unlike
MMDetection's, annotation ids start at 1 and a split without instances keeps
an empty ``annotations`` list (det-sdk's ``coco`` dataset requires the key).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from det_plugin_cityscapes.annotations import extract_instances, instance_masks, read_instance_image, render_polygons
from det_plugin_cityscapes.labels import CLASSES, LABEL_IDS
from det_plugin_cityscapes.layout import Frame, available_splits, check_source, find_frames
from detsdk.errors import DataError

OUTPUT_NAME = "instancesonly_filtered_gtFine_{split}.json"


def convert_to_coco(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    splits: Sequence[str] | None = None,
    annotations: str = "instance_ids",
) -> list[Path]:
    """Write one COCO JSON per split of ``root`` into ``out_dir``; return the paths written.

    ``splits`` defaults to every folder under ``ROOT/leftImg8bit``; a named split
    that is missing is a ``DataError``. ``annotations`` is ``"instance_ids"`` or
    ``"polygons"`` (see ``CityscapesDataset``).
    """
    check_source(annotations)
    splits = list(splits) if splits else available_splits(root)
    if not splits:
        raise DataError(f"cityscapes: no split folders under {Path(root) / 'leftImg8bit'}")
    # Check every split before writing anything, so a bad tree leaves no partial output.
    frames_of = {split: find_frames(root, split, annotations) for split in splits}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for split, frames in frames_of.items():
        read = render_polygons if annotations == "polygons" else read_instance_image
        gt = coco_ground_truth(
            (image_id, frame, read(frame.annotation_file(annotations))) for image_id, frame in enumerate(frames)
        )
        path = out_dir / OUTPUT_NAME.format(split=split)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(gt), encoding="utf-8")
        temporary.replace(path)
        written.append(path)
    return written


def coco_ground_truth(items: Iterable[tuple[int, Frame, np.ndarray]]) -> dict:
    """A COCO dict from ``(image_id, frame, instance image)`` triples.

    Annotation ids count from 1 (MMDetection's from 0): pycocotools' matcher takes id 0 for "unmatched".
    """
    images, annotations = [], []
    for image_id, frame, instance_image in items:
        height, width = instance_image.shape
        images.append(
            {
                "file_name": f"{frame.city}/{os.path.basename(frame.image)}",
                "height": int(height),
                "width": int(width),
                "segm_file": f"{frame.city}/{os.path.basename(frame.label_ids)}",
                "id": image_id,
            }
        )
        instances = extract_instances(instance_image)
        masks = instance_masks(instance_image)
        rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
        for rle, label, crowd in zip(rles, instances.labels, instances.iscrowd):
            annotation = {
                "iscrowd": int(crowd),
                "category_id": LABEL_IDS[int(label)],
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "area": float(mask_utils.area(rle)),
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "image_id": image_id,
                "id": len(annotations) + 1,
            }
            annotations.append(annotation)
    categories = [{"id": label_id, "name": name} for label_id, name in zip(LABEL_IDS, CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}
