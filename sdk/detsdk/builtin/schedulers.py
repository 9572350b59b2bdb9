"""Learning-rate schedules, stepped once per iteration, with MMDetection's linear warmup.

Every factory is ``factory(optimizer, *, total_iters, iters_per_epoch, **params)``
and returns a ``LambdaLR``: after ``i`` calls to ``scheduler.step()`` each
group's lr is ``base_lr * warmup(i) * schedule(i)``. Warmup goes linearly from
``warmup_ratio`` at iteration 0 to 1 at ``warmup_iters`` (0 turns it off).

    >>> scheduler = step(optimizer, total_iters=12 * 500, iters_per_epoch=500,  # doctest: +SKIP
    ...                  milestones=[8, 11], warmup_iters=500)
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from detsdk.errors import RecipeError, warn


def step(
    optimizer: Optimizer,
    *,
    total_iters: int,
    iters_per_epoch: int,
    milestones: list[int] = [8, 11],  # noqa: B006 - never mutated; a list so `sdk list` shows TOML
    unit: str = "epoch",
    gamma: float = 0.1,
    warmup_iters: int = 0,
    warmup_ratio: float = 0.001,
) -> LRScheduler:
    """Multiply the lr by ``gamma`` at each milestone.

    ``unit = "epoch"``: milestone 8 means after 8 full epochs, i.e. from
    iteration ``8 * iters_per_epoch`` on; ``unit = "iter"``: from that
    iteration on. Milestones must be strictly increasing.
    """
    _check_common("step", total_iters, iters_per_epoch, warmup_iters, warmup_ratio)
    if unit not in ("epoch", "iter"):
        raise RecipeError(f"scheduler 'step': unit must be \"epoch\" or \"iter\", got {unit!r}")
    if not isinstance(milestones, (list, tuple)) or not all(_is_int(m) and m > 0 for m in milestones):
        raise RecipeError(f"scheduler 'step': milestones must be a list of positive integers, got {milestones!r}")
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise RecipeError(f"scheduler 'step': milestones must be strictly increasing, got {list(milestones)}")
    _check_positive("step", "gamma", gamma)
    boundaries = [m * iters_per_epoch if unit == "epoch" else m for m in milestones]
    if boundaries and boundaries[-1] >= total_iters:
        warn(
            f"scheduler 'step': milestone {milestones[-1]} ({unit}) is at or past the end of training "
            f"({total_iters} iterations) and never takes effect"
        )

    def schedule(iteration: int) -> float:
        return gamma ** sum(iteration >= b for b in boundaries)

    return _lambda_lr(optimizer, schedule, warmup_iters, warmup_ratio)


def cosine(
    optimizer: Optimizer,
    *,
    total_iters: int,
    iters_per_epoch: int,
    min_lr_ratio: float = 0.0,
    warmup_iters: int = 0,
    warmup_ratio: float = 0.001,
    begin: int = 0,
    unit: str = "epoch",
) -> LRScheduler:
    """Cosine annealing from the base lr to ``min_lr_ratio * base lr`` at ``total_iters``.

    ``begin`` (in ``unit``: ``"epoch"`` or ``"iter"``) holds the lr flat until then and anneals
    over the rest (MMDetection's ``CosineAnnealingLR`` with ``begin``; RTMDet: ``begin = 150``
    of 300 epochs, ``min_lr_ratio = 0.05``).
    """
    _check_common("cosine", total_iters, iters_per_epoch, warmup_iters, warmup_ratio)
    _check_ratio("cosine", "min_lr_ratio", min_lr_ratio)
    if unit not in ("epoch", "iter"):
        raise RecipeError(f"scheduler 'cosine': unit must be \"epoch\" or \"iter\", got {unit!r}")
    if not _is_int(begin) or begin < 0:
        raise RecipeError(f"scheduler 'cosine': begin must be an integer >= 0, got {begin!r}")
    start = begin * iters_per_epoch if unit == "epoch" else begin
    if start >= total_iters:
        raise RecipeError(
            f"scheduler 'cosine': begin = {begin} ({unit}) is at or past the end of training ({total_iters} iterations)"
        )

    def schedule(iteration: int) -> float:
        progress = min(max(iteration - start, 0) / (total_iters - start), 1.0)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return _lambda_lr(optimizer, schedule, warmup_iters, warmup_ratio)


def poly(
    optimizer: Optimizer,
    *,
    total_iters: int,
    iters_per_epoch: int,
    power: float = 1.0,
    min_lr_ratio: float = 0.0,
    warmup_iters: int = 0,
    warmup_ratio: float = 0.001,
) -> LRScheduler:
    """Polynomial decay: ``min + (1 - min) * (1 - i / total_iters) ** power`` (as a ratio of the base lr)."""
    _check_common("poly", total_iters, iters_per_epoch, warmup_iters, warmup_ratio)
    _check_positive("poly", "power", power)
    _check_ratio("poly", "min_lr_ratio", min_lr_ratio)

    def schedule(iteration: int) -> float:
        remaining = max(1.0 - iteration / total_iters, 0.0)
        return min_lr_ratio + (1.0 - min_lr_ratio) * remaining**power

    return _lambda_lr(optimizer, schedule, warmup_iters, warmup_ratio)


def constant(
    optimizer: Optimizer,
    *,
    total_iters: int,
    iters_per_epoch: int,
    warmup_iters: int = 0,
    warmup_ratio: float = 0.001,
) -> LRScheduler:
    """The base lr throughout (after the optional warmup)."""
    _check_common("constant", total_iters, iters_per_epoch, warmup_iters, warmup_ratio)
    return _lambda_lr(optimizer, lambda iteration: 1.0, warmup_iters, warmup_ratio)


def _lambda_lr(
    optimizer: Optimizer, schedule: Callable[[int], float], warmup_iters: int, warmup_ratio: float
) -> LambdaLR:
    """Warmup times schedule, as one lambda (a plain function, so state_dict holds only numbers)."""

    def factor(iteration: int) -> float:
        if iteration < warmup_iters:
            # MMDetection's linear warmup: warmup_ratio at 0, 1 at warmup_iters.
            warmup = warmup_ratio + (1.0 - warmup_ratio) * iteration / warmup_iters
        else:
            warmup = 1.0
        return warmup * schedule(iteration)

    return LambdaLR(optimizer, factor)


def _check_common(name: str, total_iters: int, iters_per_epoch: int, warmup_iters: int, warmup_ratio: float) -> None:
    if not _is_int(total_iters) or total_iters <= 0:
        raise RecipeError(f"scheduler '{name}': total_iters must be a positive integer, got {total_iters!r}")
    if not _is_int(iters_per_epoch) or iters_per_epoch <= 0:
        raise RecipeError(f"scheduler '{name}': iters_per_epoch must be a positive integer, got {iters_per_epoch!r}")
    if not _is_int(warmup_iters) or warmup_iters < 0:
        raise RecipeError(f"scheduler '{name}': warmup_iters must be an integer >= 0, got {warmup_iters!r}")
    _check_ratio(name, "warmup_ratio", warmup_ratio)


def _check_ratio(name: str, parameter: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise RecipeError(f"scheduler '{name}': {parameter} must be a number in [0, 1], got {value!r}")


def _check_positive(name: str, parameter: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise RecipeError(f"scheduler '{name}': {parameter} must be a number > 0, got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
