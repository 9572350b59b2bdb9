"""The cache of recent samples that MMDetection's ``CachedMosaic`` and ``CachedMixUp`` mix with."""

from __future__ import annotations

import copy

import numpy as np


class SampleCache:
    """Up to ``max_size`` recent samples; when full, one leaves (a random one with ``random_pop``, else the oldest).

    It lives in the process that runs the pipeline (each DataLoader worker has its own), so
    what a sample is mixed with depends on what that worker saw before: faster than loading
    other samples, but not reproducible by per-sample seeding.
    """

    def __init__(self, max_size: int, random_pop: bool):
        self.max_size = max_size
        self.random_pop = random_pop
        self.samples: list[dict] = []

    def add(self, sample: dict) -> None:
        """Keep a deep copy of ``sample``, dropping one first when full."""
        self.samples.append(copy.deepcopy(sample))
        if len(self.samples) > self.max_size:
            self.samples.pop(np.random.randint(len(self.samples)) if self.random_pop else 0)

    def __len__(self) -> int:
        return len(self.samples)

    def pick(self) -> dict:
        """A deep copy of a cached sample drawn at random."""
        return copy.deepcopy(self.samples[np.random.randint(len(self.samples))])
