"""Per-sample seeding: a training sample's augmentation depends on (seed, epoch, index) only.

Not on the worker that loads it, how many workers there are, or where a run
was resumed: that is what lets ``--resume`` replay an epoch exactly. Inside a
DataLoader worker the process's random streams are simply re-seeded; in the
main process (``num_workers = 0``) they are restored afterwards, so the
model's own randomness (RPN and RoI sampling) is not disturbed.

    >>> with sample_seeded(0, epoch=3, index=17):   # doctest: +SKIP
    ...     sample = transform(sample)
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import get_worker_info


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed mixed from the run's seed, the epoch and the sample index (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([seed % 2**32, epoch, index]).generate_state(1)[0])


@contextmanager
def sample_seeded(seed: int, epoch: int, index: int) -> Iterator[None]:
    """Seed ``np.random``, ``random`` and torch's CPU generator for one sample (restored in the main process)."""
    value = sample_seed(seed, epoch, index)
    if get_worker_info() is not None:  # a worker's streams belong to its samples alone
        _seed_all(value)
        yield
        return
    saved = np.random.get_state(), random.getstate(), torch.get_rng_state()
    _seed_all(value)
    try:
        yield
    finally:
        np.random.set_state(saved[0])
        random.setstate(saved[1])
        torch.set_rng_state(saved[2])


def _seed_all(value: int) -> None:
    np.random.seed(value)
    random.seed(value)
    torch.default_generator.manual_seed(value)  # the CPU generator only: CUDA's belongs to the model
