"""Which sample indices a process reads, in which order: shuffling, resuming, sharding, aspect-ratio groups."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from detsdk.errors import warn


class EpochSampler(Sampler[int]):
    """Indices of one epoch for one process, shuffled by ``(seed, epoch)``, optionally starting mid-epoch.

    Starting mid-epoch is what makes ``--resume`` continue exactly where a
    run stopped, without replaying the batches it already trained on.

    With several processes (``torchrun``; each one a *rank* of ``world_size``)
    every rank builds the same permutation and keeps its share:

    - ``pad=True`` (training): the permutation, padded with its own first
      indices to a multiple of ``world_size``, is dealt one index at a time
      (rank ``r`` keeps positions ``r, r + world_size, ...``), as
      ``DistributedSampler`` does. Every rank gets as many indices, so all take
      the same number of steps, and one step of ``world_size`` ranks sees the
      images one process would see with ``world_size`` times the batch.
    - ``pad=False`` (evaluation): whole batches of ``batch_size`` are dealt
      round-robin and nothing repeats, so each image is evaluated exactly once,
      in the very batch one process would have put it in.

    ``group_ids`` (one per dataset index, e.g. ``aspect_ratio_groups``)
    reorders each rank's share so that every run of ``batch_size``
    consecutive indices comes from one group (torchvision's
    ``GroupedBatchSampler``, Detectron2's ``AspectRatioGroupedDataset``); the
    incomplete groups go last, so the number of batches does not change.
    """

    def __init__(
        self,
        size: int,
        shuffle: bool,
        seed: int = 0,
        *,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        batch_size: int = 1,
        group_ids: Sequence[int] | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
        if group_ids is not None and len(group_ids) != size:
            raise ValueError(f"{len(group_ids)} group ids for {size} samples")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.pad, self.batch_size = rank, world_size, pad, max(1, batch_size)
        self.group_ids = list(group_ids) if group_ids is not None else None
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the permutation of ``epoch`` and skip its first ``start`` indices (of this rank's share)."""
        self.epoch, self.start = epoch, start

    def epoch_order(self) -> list[int]:
        """This rank's indices for the current epoch, from the beginning (``start`` not applied)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.world_size > 1:
            order = self._share(order)
        if self.group_ids is not None:
            order = group_batches(order, self.group_ids, self.batch_size)
        return order

    def _share(self, order: list[int]) -> list[int]:
        if self.pad:
            total = math.ceil(len(order) / self.world_size) * self.world_size
            padded = (order * math.ceil(total / len(order)))[:total] if order else []
            return padded[self.rank :: self.world_size]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        return [index for batch in batches[self.rank :: self.world_size] for index in batch]

    def __iter__(self):
        return iter(self.epoch_order()[self.start :])

    def __len__(self) -> int:
        if self.world_size == 1:
            shared = self.size
        elif self.pad:
            shared = math.ceil(self.size / self.world_size)
        else:
            shared = len(self._share(list(range(self.size))))
        return max(0, shared - self.start)


def group_batches(indices: Sequence[int], group_ids: Sequence[int], batch_size: int) -> list[int]:
    """``indices`` reordered so that each run of ``batch_size`` shares a group; incomplete groups last.

    A batch is emitted as soon as its group has ``batch_size`` indices
    (torchvision's ``GroupedBatchSampler``), so the order stays random; the
    leftovers follow, group by group, and the count of indices is unchanged.
    """
    buffers: dict[int, list[int]] = defaultdict(list)
    ordered: list[int] = []
    for index in indices:
        buffer = buffers[group_ids[index]]
        buffer.append(index)
        if len(buffer) == batch_size:
            ordered.extend(buffer)
            buffer.clear()
    for group in sorted(buffers):
        ordered.extend(buffers[group])
    return ordered


def aspect_ratio_groups(dataset: Any) -> list[int]:
    """Per index, ``0`` for an image at least as wide as tall (w/h >= 1) and ``1`` for a tall one.

    Sizes come, without decoding any image, from ``dataset.image_size(i)``
    (``(height, width)``; the COCO datasets have it from their image records),
    else from ``dataset.get_annotations(i)["meta"]["ori_shape"]``; a dataset
    with neither has every image read once, with a warning saying so.
    """
    if len(dataset) == 0:
        return []
    if hasattr(dataset, "image_size"):
        sizes = [dataset.image_size(i) for i in range(len(dataset))]
    elif hasattr(dataset, "get_annotations") and "ori_shape" in dataset.get_annotations(0).get("meta", {}):
        sizes = [dataset.get_annotations(i)["meta"]["ori_shape"] for i in range(len(dataset))]
    else:
        warn(
            f"data.group_by_aspect_ratio: {type(dataset).__name__} has no image_size(i) or get_annotations(i) "
            f"with meta['ori_shape']; reading all {len(dataset)} images once to learn their sizes"
        )
        sizes = [dataset[i]["image"].shape[:2] for i in range(len(dataset))]
    return [0 if int(width) >= int(height) else 1 for height, width in sizes]
