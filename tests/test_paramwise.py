"""``train.optimizer.paramwise``: no weight decay on norms and biases, shared weights listed once; cosine from an epoch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from detsdk.builtin.schedulers import cosine
from detsdk.engine.build import build_optimizer
from detsdk.engine.param_groups import param_groups
from detsdk.errors import RecipeError
from detsdk.recipe.paramwise import check_paramwise


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.other = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False))
        self.other[0] = self.conv2 = nn.Conv2d(4, 4, 1, bias=False)
        self.again = self.conv2  # the same module twice: its weight is shared


def _decay_of(optimizer, param):
    return next(g["weight_decay"] for g in optimizer.param_groups if any(p is param for p in g["params"]))


def test_adamw_paramwise_puts_no_decay_on_norms_and_biases_and_lists_shared_weights_once():
    model = Shared()
    spec = {"type": "adamw", "lr": 0.004, "weight_decay": 0.05,
            "paramwise": {"norm_decay_mult": 0.0, "bias_decay_mult": 0.0, "bypass_duplicate": True}}
    optimizer = build_optimizer(spec, model)
    assert _decay_of(optimizer, model.conv.weight) == 0.05 and _decay_of(optimizer, model.conv2.weight) == 0.05
    assert _decay_of(optimizer, model.conv.bias) == 0.0
    assert _decay_of(optimizer, model.bn.weight) == 0.0 and _decay_of(optimizer, model.bn.bias) == 0.0
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 5
    assert "paramwise" in spec  # the recipe's table is not modified


def test_shared_weights_without_bypass_duplicate_are_an_error():
    with pytest.raises(RecipeError, match="bypass_duplicate"):
        param_groups(Shared(), 0.05)


def test_paramwise_multipliers_scale_the_optimizers_default_decay():
    model = Shared()
    optimizer = build_optimizer({"type": "sgd", "paramwise": {"bias_decay_mult": 0.5, "bypass_duplicate": True}}, model)
    assert _decay_of(optimizer, model.conv.bias) == pytest.approx(0.5e-4)  # sgd's default 1e-4
    assert _decay_of(optimizer, model.bn.weight) == pytest.approx(1e-4)


def test_paramwise_keys_are_checked_with_a_suggestion():
    with pytest.raises(RecipeError, match="did you mean 'norm_decay_mult'"):
        check_paramwise({"norm_decay_mul": 0}, "train.optimizer.paramwise")
    with pytest.raises(RecipeError, match="expected a number >= 0"):
        check_paramwise({"bias_decay_mult": -1}, "train.optimizer.paramwise")


def test_cosine_from_an_epoch_is_flat_then_anneals_to_the_minimum():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = cosine(optimizer, total_iters=300, iters_per_epoch=1, min_lr_ratio=0.05, begin=150,
                       warmup_iters=10, warmup_ratio=1e-5)
    lrs = []
    for _ in range(300):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(1e-5) and lrs[10] == pytest.approx(1.0) and lrs[150] == pytest.approx(1.0)
    assert lrs[225] == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[299] == pytest.approx(0.05, abs=1e-3)
    with pytest.raises(RecipeError, match="past the end"):
        cosine(optimizer, total_iters=300, iters_per_epoch=1, begin=300)
