"""train.ema: the averaged weights, what evaluation and checkpoints use; the GradScaler's state in checkpoints."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import tiny_recipe
from torch import nn

from detsdk import Engine, load_detector
from detsdk.engine import engine as engine_module
from detsdk.engine.checkpoint import load_checkpoint
from detsdk.engine.ema import ModelEMA
from detsdk.engine.predictor import fused_for_inference
from detsdk.engine.train_step import TrainStep


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    """Three iterations with a fast EMA, evaluated at the end; records which model evaluation ran."""
    work_dir = tmp_path_factory.mktemp("ema")
    evaluated = []
    original = engine_module.run_evaluation

    def recording(model, *args, **kwargs):
        evaluated.append(model)
        return original(model, *args, **kwargs)

    engine_module.run_evaluation = recording
    try:
        recipe = tiny_recipe(work_dir, train={"iters": 3, "ema": {"momentum": 0.5, "gamma": 0}},
                             runtime={"work_dir": str(work_dir), "plot_samples": 0})
        engine = Engine.from_recipe(recipe)
        engine.fit()
    finally:
        engine_module.run_evaluation = original
    return engine, evaluated, work_dir


def test_ema_weights_differ_from_the_model_and_evaluation_uses_them(ema_run):
    engine, evaluated, _ = ema_run
    averaged = engine.train_step.ema.module
    assert evaluated and all(model is averaged for model in evaluated)
    model_state, ema_state = engine.model.state_dict(), averaged.state_dict()
    assert model_state.keys() == ema_state.keys()
    assert any(not torch.equal(model_state[k], ema_state[k]) for k in model_state if model_state[k].is_floating_point())


def test_checkpoints_hold_the_average_as_model_and_the_training_weights_under_ema(ema_run):
    engine, _, work_dir = ema_run
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(work_dir / name)
        assert state["ema"]["updates"] == 3 and state["scaler"] is None  # no GradScaler without fp16
        for key, tensor in engine.train_step.ema.module.state_dict().items():
            assert torch.equal(state["model"][key], tensor), (name, key)
        for key, tensor in engine.model.state_dict().items():
            assert torch.equal(state["ema"]["training_weights"][key], tensor), (name, key)
    # Apps get the averaged weights (load_detector folds BatchNorms into convolutions; the same folding
    # of the average must give the same weights).
    detector = load_detector(work_dir / "best.pt", device="cpu")
    averaged = fused_for_inference(copy.deepcopy(engine.train_step.ema.module), torch.device("cpu"))
    assert detector.model.state_dict().keys() == averaged.state_dict().keys()
    for key, tensor in averaged.state_dict().items():
        assert torch.equal(detector.model.state_dict()[key], tensor), key


def test_ema_follows_mmdetection_exp_momentum_rule():
    model = nn.Linear(2, 1, bias=False)
    ema = ModelEMA(model, momentum=0.1, gamma=4)
    with torch.no_grad():
        model.weight.fill_(1.0)
        ema.update(model)  # the first update copies
        model.weight.fill_(3.0)
        ema.update(model)
    momentum = (1 - 0.1) * math.exp(-(1 + 1) / 4) + 0.1
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 1.0 + momentum * 2.0))
    assert ema.updates == 2 and ema.momentum_at(10_000) == pytest.approx(0.1)


def test_a_gradscaler_unscales_before_clipping_and_its_state_round_trips():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)

    class Losses(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, images, targets):
            return {"loss_l2": self.inner(images).pow(2).mean() * 1000}

    net = Losses()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0: only the gradients matter here
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    step = TrainStep(net, optimizer, scheduler, torch.device("cpu"), grad_clip=0.5)
    step.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)  # what fp16 on CUDA uses
    step([(torch.randn(3, 4), [{}])], iteration=1, epoch=1)
    norm = torch.cat([p.grad.flatten() for p in net.parameters()]).norm()
    assert norm == pytest.approx(0.5, rel=1e-4)  # clipped in true units, not in units scaled by 1024
    entries = step.checkpoint_entries(net.state_dict())
    assert entries["scaler"]["scale"] == pytest.approx(1024.0) and entries["ema"] is None
    restored = TrainStep(net, optimizer, scheduler, torch.device("cpu"))
    restored.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    restored.restore(entries)
    assert restored.scaler.get_scale() == pytest.approx(1024.0)
