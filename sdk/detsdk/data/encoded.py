"""Training samples whose images stay encoded: ``data.decode_on_device``, the loader's side.

A worker reads each image file's bytes as a NumPy array (it pickles to the main
process inline; ``torchvision.io.read_file``'s tensor failed to cross the worker
queue, "Bad file descriptor" in torch's shared-memory reduction) without
decoding them, takes the annotations from the dataset's ``get_annotations``
(no image read), and walks the training pipeline on the annotations alone: it
draws the same random numbers the CPU pipeline would, under the same
per-sample seed (``PipelineDataset.seed_samples``), so a flip or a multi-scale
size is the one the CPU pipeline would have picked and ``--resume`` replays it.
Boxes and masks come out as the CPU pipeline gives them, through the
transforms' own geometry (``Resize.target_size``, ``resize_annotations``,
``flip_annotations``, ``Pad.target_size``, ``pad_annotations``); ``meta`` records what
the device must do to the pixels (``ori_shape``, ``img_shape``, ``flip_direction``,
``pad_shape``, ``normalize``), and ``DeviceDecode`` (``detsdk.data.device_decode``)
does it.

The pipeline may hold only a ``resize`` (at most one), a ``random_flip`` (at
most one), then ``normalize`` and an optional ``pad`` with ``pad_value = 0`` at
the end, recognised by their roles (``detsdk.data.transform_roles``).

    >>> normalize = check_decodable(transforms, "data.train.pipeline")   # doctest: +SKIP
    >>> data = EncodedDataset(dataset, transforms)                       # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from detsdk.builtin.transforms.geometric import flip_annotations, pad_annotations, resize_annotations
from detsdk.data.device_normalize import DeviceNormalize
from detsdk.data.loader import PipelineDataset, target_of
from detsdk.data.transform_roles import NORMALIZE, PAD, RANDOM_FLIP, RESIZE, role_of
from detsdk.errors import DataError, RecipeError

SUPPORTED = "resize, random_flip, normalize and pad (pad_value = 0)"


def check_decodable(transforms: Sequence, where: str, names: Sequence[str] | None = None) -> DeviceNormalize:
    """Check that ``transforms`` is a pipeline ``decode_on_device`` can run; return its device normalisation.

    ``where`` is the recipe key the transforms come from (``data.train.pipeline``), ``names``
    their recipe ``type`` names (else their class names). A ``RecipeError`` names the
    first transform that does not fit and says what is supported.
    """
    names = list(names) if names is not None else [type(t).__name__ for t in transforms]
    roles = [role_of(t) for t in transforms]
    for i, (role, name) in enumerate(zip(roles, names)):
        item = f"data.decode_on_device: {where}[{i}] ({name!r})"
        if role not in (RESIZE, RANDOM_FLIP, NORMALIZE, PAD):
            raise RecipeError(f"{item} cannot run on the device; the pipeline may hold only {SUPPORTED}. "
                              "Remove it or set data.decode_on_device = false")
        if role in (RESIZE, RANDOM_FLIP) and roles[:i].count(role) > 0:
            raise RecipeError(f"{item}: the pipeline has a second {role}; decode_on_device takes at most one")
        if role in (RESIZE, RANDOM_FLIP) and NORMALIZE in roles[:i]:
            raise RecipeError(f"{item} comes after normalize; put resize and random_flip before it")
        if role == RESIZE and not (callable(getattr(transforms[i], "sample_scale", None))
                                   and callable(getattr(transforms[i], "target_size", None))):
            raise RecipeError(f"{item}: this resize has no sample_scale() and target_size(height, width, scale) "
                              "to compute sizes without an image; decode_on_device needs them")
        if role == PAD and (i != len(transforms) - 1 or transforms[i].pad_value != 0):
            raise RecipeError(f"{item}: decode_on_device pads last, after normalize, with pad_value = 0 "
                              f"(got pad_value = {transforms[i].pad_value!r})")
    tail = roles[-2:] if roles[-1:] == [PAD] else roles[-1:]
    if not tail or tail[0] != NORMALIZE:
        raise RecipeError(f"data.decode_on_device: {where} must end with normalize (then an optional pad); "
                          f"it may hold only {SUPPORTED}")
    normalize = transforms[len(roles) - len(tail)]
    return DeviceNormalize(normalize.mean, normalize.std)


@attrs.frozen
class EncodedBatch:
    """A batch as ``collate_encoded`` gives it: each image's file bytes and the meta that says what to do to it."""

    data: list[np.ndarray]  # 1-d uint8, the file's bytes
    metas: list[dict]


class EncodedDataset(PipelineDataset):
    """Training items with the image file's bytes (``encoded``) instead of decoded pixels.

    Args:
        dataset: a dataset with ``get_annotations(index)`` whose ``meta`` names the image ``file``.
        transforms: the training pipeline; ``check_decodable`` must accept it.
        where: the recipe key of the dataset, for errors.
    """

    def __init__(self, dataset: Any, transforms: Sequence[Callable[[dict], dict]], where: str = "data.train"):
        if not callable(getattr(dataset, "get_annotations", None)):
            raise RecipeError(
                f"data.decode_on_device: {where} ({type(dataset).__name__}) has no get_annotations(index), so its "
                "images cannot be read from files undecoded; use a dataset of image files (coco, middle, yolo, ...) "
                "or set data.decode_on_device = false"
            )
        if len(dataset) and not dataset.get_annotations(0).get("meta", {}).get("file"):
            raise RecipeError(
                f"data.decode_on_device: {where} ({type(dataset).__name__}) gives no meta['file'] in "
                "get_annotations(index): its images are not files; set data.decode_on_device = false"
            )
        super().__init__(dataset, transforms)

    def _item(self, index: int) -> dict:
        sample = self.dataset.get_annotations(index)
        path = sample["meta"]["file"]
        what = f"item {index} of {type(self.dataset).__name__}"
        if not os.path.isfile(path):
            raise DataError(f"image file not found: {path} ({what})")
        try:
            encoded = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise DataError(f"cannot read image file {path} ({what}): {exc}") from exc
        transforms = self.transforms_at(int(self._epoch)) if len(self.stages) > 1 else self.stages[0][1]
        return {**plan_sample(sample, transforms), "encoded": encoded}


def plan_sample(sample: dict, transforms: Sequence) -> dict:
    """Run the pipeline's geometry on a sample without its image: boxes, masks and ``meta`` as the
    CPU pipeline would leave them, from ``meta["ori_shape"]``; random draws in the pipeline's order."""
    sample, meta = dict(sample), dict(sample["meta"])
    height, width = (int(v) for v in meta["ori_shape"])
    for transform in transforms:
        role = role_of(transform)
        if role == RESIZE:
            new_size = transform.target_size(height, width, transform.sample_scale())
            resize_annotations(sample, meta, (height, width), new_size)
            height, width = new_size
        elif role == RANDOM_FLIP:
            flip = transform.draw()
            meta["flip"], meta["flip_direction"] = flip, transform.direction if flip else None
            if flip:
                flip_annotations(sample, (height, width), transform.direction)
        elif role == NORMALIZE:
            meta["normalize"] = {"mean": list(transform.mean), "std": list(transform.std), "on_device": True}
            meta.setdefault("img_shape", (height, width))
        elif role == PAD:
            pad_annotations(sample, meta, (height, width), transform.target_size(height, width))
    sample["meta"] = meta
    return sample


def collate_encoded(samples: list[dict]) -> tuple[EncodedBatch, list[dict], list[dict]]:
    """``collate`` for ``EncodedDataset`` items: the encoded images as an ``EncodedBatch``, targets as
    ``collate`` makes them (``image_size`` is the unpadded ``img_shape``), and the metas."""
    metas = [sample["meta"] for sample in samples]
    targets = [target_of(sample, sample["meta"]["img_shape"]) for sample in samples]
    return EncodedBatch([sample["encoded"] for sample in samples], metas), targets, metas
