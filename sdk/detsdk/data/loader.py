"""Apply a recipe's pipeline to a dataset's samples and batch them.

The engine owns the pipeline (DESIGN: ``pipeline`` is not a dataset
argument), so any sized, indexable dataset works with any transforms.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detsdk.data.mixing import extra_samples, with_mix_samples
from detsdk.data.samplers import EpochSampler
from detsdk.data.seeding import sample_seeded

ANNOTATION_KEYS = ("boxes", "labels", "iscrowd", "masks", "areas")


class PipelineDataset(Dataset):
    """A dataset whose samples go through ``transforms`` in order.

    With ``keep_annotations`` each item is ``(sample, annotations)``, where
    ``annotations`` is the dataset's sample before the pipeline, without the
    image: evaluation compares detections against those, in original pixels.
    After ``seed_samples(seed)`` each item's randomness depends on the seed, the
    epoch (``set_epoch``) and its index only (see ``detsdk.data.seeding``).

    The pipeline may change from an epoch on (``add_stage``, the ``pipeline_switch``
    hook): each item takes the stage of the epoch it belongs to, read from the
    shared-memory epoch that persistent workers see too.
    """

    def __init__(self, dataset: Any, transforms: Sequence[Callable[[dict], dict]], keep_annotations: bool = False):
        self.dataset = dataset
        # (first 0-based epoch, transforms), by epoch: the recipe's pipeline from epoch 0, then add_stage's.
        self.stages: list[tuple[int, list]] = [(0, list(transforms))]
        self.keep_annotations = keep_annotations
        self.seed: int | None = None
        self._epoch = torch.zeros((), dtype=torch.int64)

    @property
    def transforms(self) -> list:
        """The recipe's pipeline (the first stage)."""
        return self.stages[0][1]

    def add_stage(self, from_epoch: int, transforms: Sequence[Callable[[dict], dict]]) -> None:
        """From 0-based epoch ``from_epoch`` on, samples go through ``transforms`` instead.

        Call it before the loader's workers start: they keep the stages they were started with.
        """
        self.stages = sorted([*(s for s in self.stages if s[0] != from_epoch), (from_epoch, list(transforms))],
                             key=lambda stage: stage[0])

    def transforms_at(self, epoch: int) -> list:
        """The transforms of the stage that 0-based ``epoch`` belongs to."""
        return next(transforms for start, transforms in reversed(self.stages) if start <= epoch)

    def seed_samples(self, seed: int) -> None:
        """Seed every item from ``(seed, epoch, index)``, whichever worker loads it."""
        self.seed = seed
        # Shared memory: persistent workers see the epoch the main process sets.
        self._epoch.share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next items belong to (per-sample seeding and the pipeline stage)."""
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if self.seed is not None:
            with sample_seeded(self.seed, int(self._epoch), index):
                return self._item(index)
        return self._item(index)

    def _item(self, index: int):
        sample = self.dataset[index]
        annotations = None
        if self.keep_annotations:
            annotations = {k: np.array(v, copy=True) for k, v in sample.items() if k in ANNOTATION_KEYS}
            annotations["meta"] = dict(sample.get("meta", {}))
            annotations["meta"].setdefault("ori_shape", tuple(sample["image"].shape[:2]))
        transforms = self.transforms_at(int(self._epoch)) if len(self.stages) > 1 else self.stages[0][1]
        sample = apply_pipeline(sample, transforms, source=self.dataset)
        return (sample, annotations) if self.keep_annotations else sample


def apply_pipeline(sample: dict, transforms: Sequence[Callable[[dict], dict]], source: Any = None) -> dict:
    """Run ``transforms`` over a sample, recording its original shape first.

    A transform that mixes samples (``extra_samples > 0``, see ``detsdk.data.mixing``) gets
    them drawn from ``source``, the dataset the sample came from.
    """
    sample = _start_pipeline(sample)
    for position, transform in enumerate(transforms):
        if extra_samples(transform):
            sample = with_mix_samples(sample, transform, transforms[:position], source, _start_pipeline)
        sample = transform(sample)
    return sample


def _start_pipeline(sample: dict) -> dict:
    """A copy of the sample with ``meta["ori_shape"]`` recorded."""
    sample = dict(sample)
    meta = dict(sample.get("meta", {}))
    meta.setdefault("ori_shape", tuple(sample["image"].shape[:2]))
    sample["meta"] = meta
    return sample


def collate(samples: list[dict]) -> tuple[torch.Tensor, list[dict], list[dict]]:
    """Stack images into a zero-padded ``B×3×H×W`` float tensor; targets and metas stay lists.

    Images may be uint8 (no ``normalize`` in the pipeline) or float32; each
    target's ``image_size`` is the image's (h, w) before any padding. Samples whose
    normalisation is deferred to the device (``DeferredNormalize``) stay uint8.
    """
    height = max(s["image"].shape[0] for s in samples)
    width = max(s["image"].shape[1] for s in samples)
    deferred = all(s.get("meta", {}).get("normalize", {}).get("on_device") for s in samples)
    images = torch.zeros((len(samples), 3, height, width), dtype=torch.uint8 if deferred else torch.float32)
    targets, metas = [], []
    for i, sample in enumerate(samples):
        image = torch.from_numpy(np.ascontiguousarray(sample["image"])).permute(2, 0, 1)
        images[i, :, : image.shape[1], : image.shape[2]] = image  # copy_ converts the dtype
        meta = sample.get("meta", {})
        targets.append(target_of(sample, tuple(meta.get("img_shape", image.shape[1:]))))
        metas.append(meta)
    return images, targets, metas


def target_of(sample: dict, img_shape: tuple[int, int]) -> dict:
    """What the model is given for one sample: ``image_size`` (the unpadded ``img_shape``), and its
    ``boxes``, ``labels``, ``iscrowd`` and ``masks`` as tensors when it has them."""
    target = {"image_size": (int(img_shape[0]), int(img_shape[1]))}
    if "boxes" in sample:
        target["boxes"] = torch.as_tensor(np.asarray(sample["boxes"], dtype=np.float32).reshape(-1, 4))
        target["labels"] = torch.as_tensor(np.asarray(sample["labels"], dtype=np.int64))
        crowd = sample.get("iscrowd")
        target["iscrowd"] = torch.as_tensor(
            np.asarray(crowd, dtype=bool) if crowd is not None else np.zeros(len(target["labels"]), bool)
        )
    if "masks" in sample:
        target["masks"] = torch.as_tensor(np.asarray(sample["masks"], dtype=np.uint8))
    return target


def collate_with_annotations(items: list[tuple[dict, dict]]):
    """Like ``collate``, plus the list of pre-pipeline annotations for evaluation."""
    images, targets, metas = collate([sample for sample, _ in items])
    return images, targets, metas, [annotations for _, annotations in items]


def _seed_worker(worker_id: int) -> None:
    # Each worker gets its own numpy/random stream derived from torch's per-worker seed.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    # No cv2.setNumThreads here: in a worker forked after the main process used OpenCV's thread pool
    # (plots after an evaluation), it deadlocks, and the next evaluation's loader never yields.


def build_loader(
    dataset: PipelineDataset,
    batch_size: int,
    num_workers: int,
    shuffle: bool,
    seed: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
    group_ids: Sequence[int] | None = None,
    persistent_workers: bool = False,
    prefetch_factor: int = 2,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """A DataLoader over a pipeline dataset with a resumable epoch sampler.

    ``persistent_workers`` and ``prefetch_factor`` apply with ``num_workers > 0`` only.

    ``rank``/``world_size`` give this process its share of the data (padded
    when shuffling for training, unpadded for evaluation; see ``EpochSampler``);
    ``group_ids`` batches images of one aspect-ratio group together; ``collate_fn`` replaces
    ``collate`` (``collate_encoded`` for ``data.decode_on_device``).
    """
    sampler = EpochSampler(
        len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, pad=shuffle,
        batch_size=batch_size, group_ids=group_ids,
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn or (collate_with_annotations if dataset.keep_annotations else collate),
        worker_init_fn=_seed_worker,
        persistent_workers=persistent_workers and num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed + rank),  # worker seeds differ across ranks
    )
