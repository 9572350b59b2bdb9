"""Transforms that mix several samples (Mosaic, MixUp): how the pipeline hands them the other samples.

A transform asks for other samples by declaring ``extra_samples = n`` (a class or instance
attribute, n ≥ 1). Before calling it, the pipeline draws ``n`` dataset indexes with
``np.random`` (so per-sample seeding makes them, and everything after, depend on
``(seed, epoch, index)`` only: exact resume holds), loads those samples, runs each through
the transforms that come before it in the pipeline (skipping other mixing transforms, so a
Mosaic before a MixUp does not multiply the loads), and passes them in
``sample["mix_samples"]`` (a list of samples). The transform must remove that key.

A mixing transform that keeps its own cache of samples instead (``max_cached_images > 0``,
MMDetection's ``CachedMosaic``) declares ``extra_samples = 0`` and gets nothing.

    >>> class Blend:                                       # doctest: +SKIP
    ...     extra_samples = 1
    ...     def __call__(self, sample):
    ...         other = sample.pop("mix_samples")[0]
    ...         ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from detsdk.errors import RecipeError

MIX_KEY = "mix_samples"


def extra_samples(transform: Any) -> int:
    """How many other samples ``transform`` asks for (0 for ordinary transforms)."""
    return int(getattr(transform, "extra_samples", 0) or 0)


def with_mix_samples(
    sample: dict,
    transform: Any,
    preceding: Sequence[Callable[[dict], dict]],
    source: Any,
    start: Callable[[dict], dict],
) -> dict:
    """``sample`` with ``mix_samples``: the samples ``transform`` asks for, drawn from ``source``.

    Args:
        sample: the sample about to reach ``transform``.
        transform: a transform with ``extra_samples > 0``.
        preceding: the pipeline's transforms before it; the extra samples go through those
            that do not mix themselves.
        source: the sized, indexable dataset to draw from (``None``: there is none, an error).
        start: what the pipeline does to a raw sample before its first transform.
    """
    count = extra_samples(transform)
    if source is None or len(source) == 0:
        raise RecipeError(
            f"transform {type(transform).__name__} mixes {count} other samples, so it needs a dataset to draw "
            "them from; use it in data.train's pipeline only"
        )
    indexes = np.random.randint(0, len(source), size=count)
    others = []
    for index in indexes:
        other = start(source[int(index)])
        for step in preceding:
            if extra_samples(step) == 0 and not getattr(step, "mixes_samples", False):
                other = step(other)
        others.append(other)
    sample = dict(sample)
    sample[MIX_KEY] = others
    return sample
