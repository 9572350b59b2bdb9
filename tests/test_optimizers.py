"""Optimizers: MMDetection defaults, param groups, parameter checks."""

from __future__ import annotations

import pytest
import torch

from detsdk.builtin import optimizers
from detsdk.errors import RecipeError


def model():
    return torch.nn.Linear(2, 1)


def test_sgd_has_mmdetection_defaults():
    optimizer = optimizers.sgd(model().parameters())
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.02, 0.9, 1e-4, False)


def test_adamw_takes_betas_as_a_list():
    optimizer = optimizers.adamw(model().parameters(), lr=2e-4, betas=[0.8, 0.99])
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert (group["lr"], group["betas"], group["weight_decay"]) == (2e-4, (0.8, 0.99), 0.05)


def test_param_groups_keep_their_own_settings():
    net = model()
    optimizer = optimizers.sgd([{"params": [net.weight]}, {"params": [net.bias], "weight_decay": 0.0}], lr=0.1)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-4, 0.0]


def test_sgd_steps():
    net = model()
    before = net.weight.detach().clone()
    optimizer = optimizers.sgd(net.parameters(), lr=0.1)
    net(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, net.weight)


@pytest.mark.parametrize(
    ("factory", "params", "named"),
    [
        (optimizers.sgd, {"lr": -0.1}, "lr"),
        (optimizers.sgd, {"momentum": 0.0, "nesterov": True}, "nesterov"),
        (optimizers.adamw, {"betas": [0.9]}, "betas"),
    ],
)
def test_invalid_parameters_name_the_parameter(factory, params, named):
    with pytest.raises(RecipeError, match=named):
        factory(model().parameters(), **params)
