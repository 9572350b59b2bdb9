"""The engine end to end on tiny shapes: files, resume, fine-tuning, failures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_recipe

from detsdk import Engine, load_detector
from detsdk.engine.checkpoint import load_checkpoint
from detsdk.errors import RecipeError, TrainingError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run shared by the tests that only read its outputs."""
    work_dir = tmp_path_factory.mktemp("run")
    engine = Engine.from_recipe(tiny_recipe(work_dir))
    metrics = engine.fit()
    return engine, metrics, work_dir


def test_a_run_writes_every_work_dir_file(trained):
    _, _, work_dir = trained
    for name in ("recipe.toml", "log.jsonl", "metrics.json", "last.pt", "best.pt",
                 "plots/loss.png", "plots/predictions.png", "plots/metrics.png"):
        assert (work_dir / name).is_file(), name


def test_metrics_json_holds_the_coco_figures_unrounded(trained):
    _, metrics, work_dir = trained
    written = json.loads((work_dir / "metrics.json").read_text())
    assert written == metrics
    assert set(written) == {f"bbox_mAP{s}" for s in ("", "_50", "_75", "_s", "_m", "_l")}


def test_log_jsonl_has_train_steps_with_lr_and_every_loss_and_an_eval(trained):
    _, _, work_dir = trained
    records = [json.loads(line) for line in (work_dir / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["mode"] == "train"]
    assert [r["iter"] for r in train] == [1, 2, 3, 4]
    assert {"lr", "loss", "loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "time"} <= train[0].keys()
    assert records[-1]["mode"] == "val" and "bbox_mAP" in records[-1]


def test_checkpoint_holds_what_resume_and_apps_need(trained):
    _, _, work_dir = trained
    state = load_checkpoint(work_dir / "last.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "iteration", "rng", "recipe", "classes",
            "version"} <= state.keys()
    assert state["iteration"] == 4 and state["classes"] == ["circle", "square", "triangle"]


def test_load_detector_predicts_on_an_image_array(trained):
    engine, _, work_dir = trained
    detector = load_detector(work_dir / "last.pt", device="cpu")
    image = engine.dataset("val").dataset[0]["image"]
    result = detector.predict(image)
    assert result.boxes.shape[1:] == (4,) and len(result.scores) == len(result.class_names)
    assert set(result.class_names) <= {"circle", "square", "triangle"}
    assert (result.boxes[:, 2] <= image.shape[1]).all()
    batch = detector.predict([image, image])
    np.testing.assert_allclose(batch[0].boxes, result.boxes, atol=1e-3)


def test_resume_continues_from_last_checkpoint_to_the_same_weights(tmp_path):
    straight = Engine.from_recipe(tiny_recipe(tmp_path / "a", train={"iters": 4, "checkpoint_interval": 2}))
    straight.fit()
    first = Engine.from_recipe(tiny_recipe(tmp_path / "b", train={"iters": 2}))
    first.fit()
    resumed = Engine.from_recipe(tiny_recipe(tmp_path / "b", train={"iters": 4}))
    resumed.fit(resume=True)
    assert resumed.iteration == 4
    for name, tensor in straight.model.state_dict().items():
        assert torch.allclose(tensor.float(), resumed.model.state_dict()[name].float(), atol=1e-5), name


def test_load_from_keeps_all_but_the_class_dependent_weights_of_another_num_classes(tmp_path):
    from detsdk.engine.build import build_model

    recipe = tiny_recipe(tmp_path / "ft", train={"iters": 1}, runtime={"plot_samples": 0})
    recipe["data"].pop("val")
    coco_like = build_model(recipe["model"], num_classes=80)  # as if trained on COCO's 80 classes
    source = tmp_path / "coco_like.pt"
    torch.save({"model": coco_like.state_dict()}, source)
    recipe["runtime"]["load_from"] = str(source)
    recipe["train"]["optimizer"] = {"type": "sgd", "lr": 0.0}  # keep the loaded weights unchanged
    with pytest.warns(UserWarning, match=r"re-initialised 4 weights with a shape mismatch: roi_heads.box_predictor"):
        engine = Engine.from_recipe(recipe)
        engine.fit()
    weights = engine.model.state_dict()
    kept = "backbone.layer1.0.conv1.weight"
    assert torch.equal(weights[kept], coco_like.state_dict()[kept])
    assert weights["roi_heads.box_predictor.cls_score.weight"].shape[0] == 4


def test_num_classes_that_disagree_with_the_dataset_is_an_error_before_training(tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["model"]["num_classes"] = 5
    with pytest.raises(RecipeError, match=r"model.num_classes = 5, but data.train \(shapes\) has 3 classes"):
        Engine.from_recipe(recipe).fit()
    assert not (tmp_path / "last.pt").exists()


def test_a_nan_loss_stops_the_run_naming_iteration_and_term(tmp_path, monkeypatch):
    engine = Engine.from_recipe(tiny_recipe(tmp_path))
    from detsdk.builtin.models import faster_rcnn

    real_forward = faster_rcnn.FasterRCNN.forward

    def poisoned(self, images, targets=None, image_sizes=None):
        losses = real_forward(self, images, targets, image_sizes)
        if self.training and engine.iteration == 2:
            losses["loss_bbox"] = losses["loss_bbox"] * math.nan
        return losses

    monkeypatch.setattr(faster_rcnn.FasterRCNN, "forward", poisoned)
    with pytest.raises(TrainingError, match=r"at iteration 3 \(epoch 2\): loss_bbox = nan"):
        engine.fit()
    assert not (tmp_path / "last.pt").exists()


def test_event_hooks_reach_plugins(tmp_path):
    from detsdk import hookimpl
    from detsdk.plugins import get_registry

    seen = []

    class Recorder:
        @hookimpl
        def detsdk_on_train_start(self, engine):
            seen.append("start")

        @hookimpl
        def detsdk_after_train_iter(self, engine, iteration, losses):
            seen.append(("iter", iteration, "loss" in losses))

        @hookimpl
        def detsdk_after_epoch(self, engine, epoch):
            seen.append(("epoch", epoch))

        @hookimpl
        def detsdk_after_eval(self, engine, metrics):
            seen.append("eval")

        @hookimpl
        def detsdk_on_train_end(self, engine):
            seen.append("end")

    get_registry().add_plugin("recorder", "0", Recorder)
    Engine.from_recipe(tiny_recipe(tmp_path, runtime={"work_dir": str(tmp_path), "plot_samples": 0})).fit()
    assert seen == ["start", ("iter", 1, True), ("iter", 2, True), ("epoch", 1), ("iter", 3, True),
                    ("iter", 4, True), ("epoch", 2), "eval", "end"]
