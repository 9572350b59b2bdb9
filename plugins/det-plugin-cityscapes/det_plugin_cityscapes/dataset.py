"""The ``cityscapes`` dataset: the 8 instance classes read from the official layout.

    >>> ds = CityscapesDataset("data/cityscapes", split="val")   # doctest: +SKIP
    >>> sample = ds[0]; sample["masks"].shape, ds.classes[sample["labels"][0]]  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from det_plugin_cityscapes.annotations import extract_instances, instance_masks, read_instance_image, render_polygons
from det_plugin_cityscapes.labels import CLASSES, LABEL_IDS
from det_plugin_cityscapes.layout import Frame, find_frames
from detsdk.builtin.data.coco import read_image
from detsdk.errors import DataError


class CityscapesDataset:
    """Samples of one Cityscapes split, read from ``leftImg8bit`` and ``gtFine`` directly.

    Classes are person, rider, car, truck, bus, train, motorcycle, bicycle
    (cityscapesscripts' labels with ``hasInstances`` and not ``ignoreInEval``);
    ``cat_ids`` are their Cityscapes label ids. Group regions (instance ids
    below 1000, e.g. a "cargroup" polygon) are kept with ``iscrowd`` True.
    Boxes are the extent of each instance's pixels; ``areas`` its pixel count.
    ``meta["image_id"]`` is the frame's position in the split's sorted file list
    (the image id ``sdk cityscapes convert`` gives it).

    There is no ``coco_gt``: the ``coco`` metric builds the same ground truth
    from the samples it evaluates, and a lazily built one would be read whole
    by wrappers such as ``repeat`` (every training frame's masks RLE-encoded).

    Args:
        root: the Cityscapes root folder (holding ``leftImg8bit/`` and ``gtFine/``).
        split: ``train``, ``val`` or ``test`` (any folder under ``leftImg8bit``).
        with_masks: also return ``masks`` (N×H×W uint8); Faster R-CNN does not need them.
        filter_empty: leave out frames without a non-crowd instance (MMDetection's
            ``filter_empty_gt``); reads every instance image once, when the dataset is built.
        annotations: ``"instance_ids"`` reads ``*_gtFine_instanceIds.png``;
            ``"polygons"`` renders ``*_gtFine_polygons.json`` with cityscapesscripts'
            ``json2instanceImg`` (for edited polygons or a download without the PNGs).
    """

    def __init__(
        self,
        root: str,
        split: str = "train",
        with_masks: bool = True,
        filter_empty: bool = False,
        annotations: str = "instance_ids",
    ):
        self.root = str(root)
        self.split = str(split)
        self.with_masks = bool(with_masks)
        self.annotations = annotations
        self.classes: list[str] = list(CLASSES)
        self.cat_ids: list[int] = list(LABEL_IDS)
        frames = find_frames(self.root, self.split, annotations)
        indexed = list(enumerate(frames))
        if filter_empty:
            indexed = [(i, f) for i, f in indexed if not extract_instances(self.instance_image(f)).iscrowd.all()]
        self.image_ids: list[int] = [i for i, _ in indexed]
        self.frames: list[Frame] = [f for _, f in indexed]

    def instance_image(self, frame: Frame) -> np.ndarray:
        """The frame's H×W instance-id image, read or rendered from polygons."""
        if self.annotations == "polygons":
            return render_polygons(frame.polygons)
        return read_instance_image(frame.instance_ids)

    def __len__(self) -> int:
        """Number of frames (after ``filter_empty``)."""
        return len(self.frames)

    def __getitem__(self, index: int) -> dict:
        """The sample at ``index``: the RGB image plus its instances."""
        sample = self.get_annotations(index)
        image = read_image(sample["meta"]["file"], what=f"cityscapes {self.split} frame {index}")
        if image.shape[:2] != sample["meta"]["ori_shape"]:
            raise DataError(
                f"cityscapes: {sample['meta']['file']} is {image.shape[0]}x{image.shape[1]} but its annotation "
                f"{sample['meta']['annotation_file']} is {sample['meta']['ori_shape'][0]}x"
                f"{sample['meta']['ori_shape'][1]} (height x width)"
            )
        sample["image"] = image
        return sample

    def get_annotations(self, index: int) -> dict:
        """The sample at ``index`` without ``image`` (reads only the annotation file)."""
        frame = self.frames[index]
        instance_image = self.instance_image(frame)
        instances = extract_instances(instance_image)
        sample = {
            "boxes": instances.boxes,
            "labels": instances.labels,
            "iscrowd": instances.iscrowd,
            "areas": instances.areas,
            "meta": {
                "image_id": self.image_ids[index],
                "file": frame.image,
                "annotation_file": frame.annotation_file(self.annotations),
                "ori_shape": tuple(instance_image.shape),
                "index": index,
            },
        }
        if self.with_masks:
            sample["masks"] = instance_masks(instance_image)
        return sample

    def __repr__(self) -> str:
        return f"CityscapesDataset({self.root!r}, split={self.split!r}, images={len(self)})"
