"""runtime.tensorboard: event files with the losses, the learning rate and the metrics; a clear error without the package."""

from __future__ import annotations

import sys

import pytest
from conftest import tiny_recipe

from detsdk import Engine
from detsdk.errors import RecipeError


def tensorboard_recipe(work_dir) -> dict:
    return tiny_recipe(work_dir, train={"iters": 2}, runtime={"work_dir": str(work_dir), "plot_samples": 0,
                                                              "tensorboard": True})


def test_tensorboard_event_files_hold_losses_lr_and_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Engine.from_recipe(tensorboard_recipe(tmp_path)).fit()
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/loss_cls", "train/lr", "val/bbox_mAP"} <= tags
    assert [event.step for event in accumulator.Scalars("train/loss")] == [1, 2]  # log_interval 1
    assert [event.step for event in accumulator.Scalars("val/bbox_mAP")] == [2]


def test_tensorboard_without_the_package_is_a_clear_error_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    engine = Engine.from_recipe(tensorboard_recipe(tmp_path))
    with pytest.raises(RecipeError, match=r"runtime.tensorboard = true needs the tensorboard package: "
                                          r"pip install 'det-sdk\[tensorboard\]'"):
        engine.fit()
    assert engine.iteration == 0
