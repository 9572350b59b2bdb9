"""LR schedules: the lr at given iterations, warmup, and parameter checks."""

from __future__ import annotations

import math

import pytest
import torch

from detsdk.builtin import schedulers
from detsdk.errors import DetSDKWarning, RecipeError

BASE_LR = 0.02


def lrs(factory, iterations: int, **params) -> list[float]:
    """The lr used at iterations 0..iterations (step() once after each)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = factory(optimizer, **params)
    out = []
    for _ in range(iterations + 1):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_warmup_goes_linearly_from_ratio_to_one():
    lr = lrs(schedulers.constant, 120, total_iters=200, iters_per_epoch=10, warmup_iters=100, warmup_ratio=0.001)
    assert lr[0] == pytest.approx(BASE_LR * 0.001)
    assert lr[50] == pytest.approx(BASE_LR * (0.001 + 0.999 * 0.5))
    assert lr[100] == pytest.approx(BASE_LR)
    assert lr[120] == pytest.approx(BASE_LR)


def test_no_warmup_starts_at_base_lr():
    assert lrs(schedulers.constant, 3, total_iters=10, iters_per_epoch=5) == pytest.approx([BASE_LR] * 4)


def test_step_decays_after_full_epochs():
    lr = lrs(schedulers.step, 120, total_iters=120, iters_per_epoch=10, milestones=[8, 11])
    assert lr[79] == pytest.approx(BASE_LR)
    assert lr[80] == pytest.approx(BASE_LR * 0.1)
    assert lr[109] == pytest.approx(BASE_LR * 0.1)
    assert lr[110] == pytest.approx(BASE_LR * 0.01)


def test_step_in_iterations_with_warmup():
    lr = lrs(
        schedulers.step, 40, total_iters=50, iters_per_epoch=7, milestones=[20, 30], unit="iter",
        gamma=0.5, warmup_iters=10, warmup_ratio=0.1,
    )
    assert lr[0] == pytest.approx(BASE_LR * 0.1)
    assert lr[19] == pytest.approx(BASE_LR)
    assert lr[20] == pytest.approx(BASE_LR * 0.5)
    assert lr[30] == pytest.approx(BASE_LR * 0.25)


def test_warmup_multiplies_the_schedule():
    lr = lrs(schedulers.step, 10, total_iters=20, iters_per_epoch=1, milestones=[2], warmup_iters=10, warmup_ratio=0.0)
    assert lr[5] == pytest.approx(BASE_LR * 0.5 * 0.1)


def test_cosine_ends_at_min_lr():
    lr = lrs(schedulers.cosine, 100, total_iters=100, iters_per_epoch=10, min_lr_ratio=0.05)
    assert lr[0] == pytest.approx(BASE_LR)
    assert lr[50] == pytest.approx(BASE_LR * (0.05 + 0.95 * 0.5))
    assert lr[100] == pytest.approx(BASE_LR * 0.05)


def test_poly_decays_with_power():
    lr = lrs(schedulers.poly, 100, total_iters=100, iters_per_epoch=10, power=2.0)
    assert lr[0] == pytest.approx(BASE_LR)
    assert lr[50] == pytest.approx(BASE_LR * 0.25)
    assert lr[100] == pytest.approx(0.0)


def test_state_dict_restores_the_position():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = schedulers.cosine(optimizer, total_iters=100, iters_per_epoch=10)
    for _ in range(30):
        optimizer.step()
        scheduler.step()
    resumed_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    resumed = schedulers.cosine(resumed_optimizer, total_iters=100, iters_per_epoch=10)
    resumed.load_state_dict(scheduler.state_dict())
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    optimizer.step(), scheduler.step(), resumed_optimizer.step(), resumed.step()
    expected = BASE_LR * 0.5 * (1 + math.cos(math.pi * 0.31))
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("factory", "params", "named"),
    [
        (schedulers.step, {"unit": "epochs"}, "unit"),
        (schedulers.step, {"milestones": [11, 8]}, "milestones"),
        (schedulers.step, {"milestones": [8, 8]}, "milestones"),
        (schedulers.constant, {"warmup_iters": -1}, "warmup_iters"),
        (schedulers.cosine, {"warmup_ratio": 2.0}, "warmup_ratio"),
        (schedulers.poly, {"power": 0}, "power"),
    ],
)
def test_invalid_parameters_name_the_parameter(factory, params, named):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    with pytest.raises(RecipeError, match=named):
        factory(optimizer, total_iters=100, iters_per_epoch=10, **params)


def test_milestone_past_the_end_warns():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    with pytest.warns(DetSDKWarning, match="never takes effect"):
        schedulers.step(optimizer, total_iters=50, iters_per_epoch=10, milestones=[8, 11])
