"""Checks of the training kinds: optimizer and scheduler build and step."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from detsdk.testing.results import CheckResult, error_text, failed, verdict

SCHEDULE_ITERS = 20
ITERS_PER_EPOCH = 5


def check_optimizer(component: str, build: Callable[[list], torch.optim.Optimizer]) -> list[CheckResult]:
    """``build(params)`` gives a ``torch.optim.Optimizer`` whose step moves a parameter with a gradient."""
    weight = torch.nn.Parameter(torch.ones(3))
    try:
        optimizer = build([weight])
    except Exception as exc:
        return [failed(component, "build", f"factory(params=[...]) raised {error_text(exc)}")]
    if not isinstance(optimizer, torch.optim.Optimizer):
        return [failed(component, "build", f"returned {type(optimizer).__name__}, expected a torch.optim.Optimizer")]
    before = weight.detach().clone()
    try:
        for _ in range(3):
            optimizer.zero_grad()
            (weight - 2.0).pow(2).sum().backward()
            optimizer.step()
    except Exception as exc:
        return [failed(component, "step", f"raised {error_text(exc)}")]
    problems = []
    if not torch.isfinite(weight).all():
        problems.append(f"the parameter became {weight.tolist()}")
    elif torch.equal(weight.detach(), before):
        problems.append("three steps with a non-zero gradient left the parameter unchanged")
    return [verdict(component, "step", problems, f"{type(optimizer).__name__}: 3 steps moved the parameter "
                    f"{before[0].item():g} -> {weight[0].item():.4g}")]


def check_scheduler(component: str, build: Callable[..., object]) -> list[CheckResult]:
    """``build(optimizer, total_iters, iters_per_epoch)`` gives an ``LRScheduler`` with finite, non-negative rates."""
    weight = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    try:
        scheduler = build(optimizer, total_iters=SCHEDULE_ITERS, iters_per_epoch=ITERS_PER_EPOCH)
    except Exception as exc:
        return [failed(component, "build", f"factory(optimizer, total_iters={SCHEDULE_ITERS}, "
                       f"iters_per_epoch={ITERS_PER_EPOCH}) raised {error_text(exc)}")]
    if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        return [failed(component, "build", f"returned {type(scheduler).__name__}, expected a torch.optim.lr_scheduler.LRScheduler")]
    rates = [optimizer.param_groups[0]["lr"]]
    try:
        for _ in range(SCHEDULE_ITERS):
            optimizer.step()
            scheduler.step()
            rates.append(optimizer.param_groups[0]["lr"])
    except Exception as exc:
        return [failed(component, "step", f"raised {error_text(exc)}")]
    bad = [(i, r) for i, r in enumerate(rates) if not (isinstance(r, (int, float)) and math.isfinite(r) and r >= 0)]
    problems = [f"lr at iteration {bad[0][0]} is {bad[0][1]!r}, expected a finite rate >= 0"] if bad else []
    return [verdict(component, "step", problems, f"{SCHEDULE_ITERS} iterations, lr {rates[0]:.4g} -> "
                    f"{min(rates):.4g} (min) -> {rates[-1]:.4g} (last), base lr 0.1")]
