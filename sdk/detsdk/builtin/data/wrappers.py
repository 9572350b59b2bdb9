"""Datasets made of other datasets: ``repeat``, ``concat``, and the selection every dataset table gets.

The engine builds a wrapper's nested tables (``dataset = {...}``,
``datasets = [...]``) first and hands the built datasets to these factories,
so wrappers nest and every nested table gets the generic keys too.

    >>> train = RepeatDataset(ConcatDataset([voc07, voc12]), times=3)      # doctest: +SKIP
    >>> cats = SelectedDataset(coco, classes=["cat", "dog"], filter_empty=True)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detsdk.errors import DataError, RecipeError, suggest, warn

# Per-box arrays of a sample; a selection keeps the same rows of each.
BOX_KEYS = ("boxes", "labels", "iscrowd", "areas", "masks")


def annotations_of(dataset: Any, index: int) -> dict:
    """A sample without its image: ``get_annotations(index)`` when the dataset has it, else the decoded sample.

    ``meta["ori_shape"]`` is always set (from the image when it had to be decoded).
    """
    if hasattr(dataset, "get_annotations"):
        return dataset.get_annotations(index)
    sample = dict(dataset[index])
    image = sample.pop("image")
    sample["meta"] = {**sample.get("meta", {}), "ori_shape": tuple(np.shape(image)[:2])}
    return sample


def _check_dataset(value: Any, where: str) -> None:
    if isinstance(value, dict) or not hasattr(value, "__getitem__") or not hasattr(value, "classes"):
        raise RecipeError(
            f"{where}: expected a dataset (an indexable object with 'classes'; in a recipe, a table with "
            f"'type' that the engine builds), got {type(value).__name__}"
        )


class RepeatDataset:
    """The samples of ``dataset``, ``times`` times over (MMDetection's ``RepeatDataset``).

    Short epochs over a small dataset cost data-loader start-up and evaluation
    time; repeating it makes one epoch long enough. Ground truth for the
    COCO metric (``coco_gt``, ``cat_ids``) passes through: evaluation counts
    each image once.

    Args:
        dataset: the dataset to repeat (a nested ``dataset = { type = ... }`` table in a recipe).
        times: how many times; an epoch is ``times * len(dataset)`` samples.
    """

    def __init__(self, dataset: Any, times: int = 1):
        _check_dataset(dataset, "repeat: dataset")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise RecipeError(f"repeat: times = {times!r}: expected an integer >= 1")
        self.dataset = dataset
        self.times = times
        self.classes: list[str] = list(dataset.classes)

    # Read on access: some datasets build their COCO ground truth only when a metric asks for it.
    @property
    def cat_ids(self) -> list[int] | None:
        """The wrapped dataset's COCO category ids, if it has them."""
        return getattr(self.dataset, "cat_ids", None)

    @property
    def coco_gt(self) -> dict | None:
        """The wrapped dataset's COCO ground truth, if it has one (each image once)."""
        return getattr(self.dataset, "coco_gt", None)

    def __len__(self) -> int:
        """``times`` times the wrapped dataset's length."""
        return self.times * len(self.dataset)

    def _inner(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"repeat: index {index} out of range for {len(self)} samples")
        return index % len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        """Sample ``index mod len(dataset)`` of the wrapped dataset."""
        return self.dataset[self._inner(index)]

    def get_annotations(self, index: int) -> dict:
        """The annotations of sample ``index`` without reading its image."""
        return annotations_of(self.dataset, self._inner(index))

    def __repr__(self) -> str:
        return f"RepeatDataset({self.dataset!r}, times={self.times})"


class ConcatDataset:
    """Several datasets one after another (MMDetection's ``ConcatDataset``).

    Their classes must agree: the same names, in any order (labels of the
    later datasets are mapped by name onto the first one's order). When the
    names differ, set ``classes = [...]`` on each nested table to select
    and order the classes they share. ``meta["image_id"]`` becomes
    ``"<k>:<image id>"`` (``k`` is the dataset's position), since ids of
    different datasets may collide, and ``meta["dataset_index"]`` is ``k``.

    Args:
        datasets: the datasets (a ``datasets = [{ type = ... }, ...]`` array of tables in a recipe).
    """

    def __init__(self, datasets: list):
        if not isinstance(datasets, (list, tuple)) or not datasets:
            raise RecipeError(f"concat: datasets = {datasets!r}: expected a non-empty list of datasets")
        for k, dataset in enumerate(datasets):
            _check_dataset(dataset, f"concat: datasets[{k}]")
        self.datasets = list(datasets)
        self.classes: list[str] = list(datasets[0].classes)
        self._label_maps = [self._label_map(k, d) for k, d in enumerate(self.datasets)]
        self._ends = np.cumsum([len(d) for d in self.datasets])
        cat_ids = self._shared_cat_ids()
        if cat_ids is not None:
            self.cat_ids = cat_ids

    def _label_map(self, k: int, dataset: Any) -> np.ndarray:
        """Label ``i`` of dataset ``k`` -> label in ``self.classes``."""
        names = list(dataset.classes)
        if sorted(names) != sorted(self.classes) or len(set(names)) != len(names):
            only_first = [c for c in self.classes if c not in names]
            only_this = [c for c in names if c not in self.classes]
            raise RecipeError(
                f"concat: the datasets' classes differ: datasets[0] ({self.datasets[0]!r}) has "
                f"{len(self.classes)} classes, datasets[{k}] ({dataset!r}) has {len(names)}; only in datasets[0]: "
                f"{_names(only_first)}; only in datasets[{k}]: {_names(only_this)}. Set classes = [...] on each "
                "nested dataset table to select and order the classes they share"
            )
        return np.array([self.classes.index(name) for name in names], dtype=np.int64)

    def _shared_cat_ids(self) -> list | None:
        """The category id of each class, when every dataset has ``cat_ids`` and they agree by name."""
        per_dataset = []
        for dataset, label_map in zip(self.datasets, self._label_maps):
            cat_ids = getattr(dataset, "cat_ids", None)
            if cat_ids is None:
                return None
            ordered = [None] * len(self.classes)
            for label, cat_id in zip(label_map, cat_ids):
                ordered[label] = cat_id
            per_dataset.append(ordered)
        return per_dataset[0] if all(c == per_dataset[0] for c in per_dataset) else None

    def __len__(self) -> int:
        """The sum of the datasets' lengths."""
        return int(self._ends[-1])

    def _locate(self, index: int) -> tuple[int, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"concat: index {index} out of range for {len(self)} samples")
        k = int(np.searchsorted(self._ends, index, side="right"))
        return k, index - (int(self._ends[k - 1]) if k else 0)

    def _relabel(self, sample: dict, k: int) -> dict:
        sample = dict(sample)
        if "labels" in sample:
            sample["labels"] = self._label_maps[k][np.asarray(sample["labels"], dtype=np.int64)]
        meta = dict(sample.get("meta", {}))
        meta["image_id"] = f"{k}:{meta.get('image_id')}"
        meta["dataset_index"] = k
        sample["meta"] = meta
        return sample

    def __getitem__(self, index: int) -> dict:
        """The sample at ``index``, its labels in this dataset's class order."""
        k, inner = self._locate(index)
        return self._relabel(self.datasets[k][inner], k)

    def get_annotations(self, index: int) -> dict:
        """The annotations of sample ``index`` without reading its image."""
        k, inner = self._locate(index)
        return self._relabel(annotations_of(self.datasets[k], inner), k)

    def __repr__(self) -> str:
        return f"ConcatDataset([{', '.join(repr(d) for d in self.datasets)}])"


class SelectedDataset:
    """A dataset's samples with the generic selection keys of a dataset table applied.

    - ``classes``: keep only boxes of these classes, renumbered in the given order;
    - ``min_size``: boxes narrower or lower than this many pixels become ignore
      regions (``iscrowd``), as MMDetection's XML datasets treat them;
    - ``filter_empty``: leave out images with no box left that is not an
      ignore region (the ``coco`` dataset's own ``filter_empty`` rule).

    What is dropped is counted in one warning. With only ``classes``, a
    dataset's COCO ground truth (``coco_gt``) is narrowed to the kept
    categories and images, so the ``coco`` metric stays exact; ``min_size``
    changes ground truth, so the metric then uses the samples themselves.
    Selection reads each sample's annotations once (``get_annotations``, or
    the decoded sample for a dataset without it).

    Args:
        dataset: the dataset to select from.
        classes: class names to keep, in their new order; ``None`` keeps all.
        filter_empty: leave out images without a (non-ignore) box.
        min_size: minimum box width and height in pixels; 0 turns it off.
        where: the recipe key path, for messages.
    """

    def __init__(
        self,
        dataset: Any,
        classes: list[str] | None = None,
        filter_empty: bool = False,
        min_size: float = 0.0,
        where: str = "dataset",
    ):
        _check_dataset(dataset, where)
        self.dataset = dataset
        self.where = where
        base_classes = [str(c) for c in dataset.classes]
        self.classes: list[str] = list(base_classes if classes is None else classes)
        self._label_map = _subset_map(base_classes, self.classes, where)
        self.min_size = float(min_size)
        self.filter_empty = bool(filter_empty)
        self._indices = list(range(len(dataset)))
        self._image_ids: list | None = None
        if classes is not None or self.filter_empty or self.min_size > 0:
            self._select_images(len(base_classes))
        base_cat_ids = getattr(dataset, "cat_ids", None)
        if base_cat_ids is not None:
            kept = np.flatnonzero(self._label_map >= 0)
            self.cat_ids = [base_cat_ids[i] for i in kept[np.argsort(self._label_map[kept])]]
            if getattr(dataset, "coco_gt", None) is not None and self.min_size == 0 and self._image_ids is not None:
                self.coco_gt = _narrow_coco(dataset.coco_gt, self.cat_ids, self._image_ids)

    def _select_images(self, num_base_classes: int) -> None:
        """One pass over the annotations: count what goes and keep the images ``filter_empty`` allows."""
        other_classes = small = 0
        kept, image_ids = [], []
        for index in range(len(self.dataset)):
            original = annotations_of(self.dataset, index)
            labels = np.asarray(original.get("labels", np.zeros(0)), dtype=np.int64)
            other_classes += int((self._label_map[labels] < 0).sum()) if labels.size else 0
            sample = self._select(original)
            crowd_before = np.asarray(original.get("iscrowd", np.zeros(len(labels))), bool)
            small += int(sample["iscrowd"].sum()) - int(crowd_before[self._label_map[labels] >= 0].sum())
            if not self.filter_empty or (~sample["iscrowd"]).any():
                kept.append(index)
                image_ids.append(sample.get("meta", {}).get("image_id"))
        parts = []
        if len(self.classes) != num_base_classes or other_classes:
            parts.append(f"kept {len(self.classes)} of {num_base_classes} classes, dropping {other_classes} box(es)")
        if small:
            parts.append(f"{small} box(es) smaller than min_size = {self.min_size:g} px became ignore regions")
        if len(kept) != len(self.dataset):
            parts.append(
                f"left out {len(self.dataset) - len(kept)} of {len(self.dataset)} image(s) without a box (filter_empty)"
            )
        if parts:
            warn(f"{self.where}: {'; '.join(parts)}")
        self._indices, self._image_ids = kept, image_ids

    def _select(self, sample: dict) -> dict:
        """The sample with only the kept classes' boxes, renumbered, small ones marked as ignore."""
        sample = dict(sample)
        labels = np.asarray(sample.get("labels", np.zeros(0)), dtype=np.int64).reshape(-1)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self._label_map)):
            raise DataError(
                f"{self.where}: sample {sample.get('meta', {}).get('file', '?')} has label {labels.max()} "
                f"but the dataset has {len(self._label_map)} classes"
            )
        keep = self._label_map[labels] >= 0
        for key in BOX_KEYS:
            if sample.get(key) is not None and key != "labels":
                sample[key] = np.asarray(sample[key])[keep]
        sample["labels"] = self._label_map[labels[keep]]
        boxes = np.asarray(sample.get("boxes", np.zeros((0, 4), np.float32)), dtype=np.float32).reshape(-1, 4)
        crowd = np.asarray(sample.get("iscrowd", np.zeros(len(boxes))), dtype=bool).reshape(-1)
        if self.min_size > 0:
            crowd = crowd | ((boxes[:, 2] - boxes[:, 0]) < self.min_size) | ((boxes[:, 3] - boxes[:, 1]) < self.min_size)
        sample["boxes"], sample["iscrowd"] = boxes, crowd
        return sample

    def __len__(self) -> int:
        """Number of images kept."""
        return len(self._indices)

    def __getitem__(self, index: int) -> dict:
        """The selected sample at ``index``."""
        return self._select(self.dataset[self._indices[index]])

    def get_annotations(self, index: int) -> dict:
        """The selected annotations at ``index`` without reading the image."""
        return self._select(annotations_of(self.dataset, self._indices[index]))

    def __repr__(self) -> str:
        return f"SelectedDataset({self.dataset!r}, classes={len(self.classes)}, images={len(self)})"


def _subset_map(base: list[str], wanted: list[str], where: str) -> np.ndarray:
    """Base label -> new label (-1: dropped); unknown or repeated names are a ``RecipeError``."""
    if not isinstance(wanted, (list, tuple)) or not wanted or not all(isinstance(n, str) for n in wanted):
        raise RecipeError(f"{where}.classes = {wanted!r}: expected a non-empty list of class names")
    for name in wanted:
        if name not in base:
            raise RecipeError(
                f"{where}.classes: unknown class '{name}'{suggest(name, base)}; the dataset's classes are "
                f"{_names(base, 30)}"
            )
    repeated = sorted({n for n in wanted if wanted.count(n) > 1})
    if repeated:
        raise RecipeError(f"{where}.classes: {_names(repeated)} listed more than once")
    label_map = np.full(len(base), -1, dtype=np.int64)
    for new, name in enumerate(wanted):
        label_map[base.index(name)] = new
    return label_map


def _narrow_coco(coco_gt: dict, cat_ids: list, image_ids: list) -> dict:
    """A COCO dict with only these categories (in this order) and images, and their annotations."""
    cats, images = set(cat_ids), set(image_ids)
    by_id = {c["id"]: c for c in coco_gt["categories"]}
    return {
        **coco_gt,
        "categories": [by_id[c] for c in cat_ids],
        "images": [i for i in coco_gt["images"] if i["id"] in images],
        "annotations": [
            a for a in coco_gt["annotations"] if a.get("category_id") in cats and a.get("image_id") in images
        ],
    }


def _names(names: list, limit: int = 10) -> str:
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
