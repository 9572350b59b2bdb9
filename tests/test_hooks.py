"""Training hooks (DESIGN.md "Hooks"): the hook kind, stop_training, early stopping, errors named, resume."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_recipe, write_recipe

import detsdk
from detsdk import Engine
from detsdk.engine.checkpoint import load_checkpoint
from detsdk.engine.run_log import RunLog
from detsdk.errors import HookError, RecipeError
from detsdk.plugins import get_registry
from detsdk.recipe import load_recipe, validate_recipe


def epoch_recipe(work_dir, epochs: int = 4, hooks=(), **train) -> dict:
    """Two iterations an epoch (8 images, batch 4), an evaluation after each epoch, no plots."""
    return tiny_recipe(work_dir, train={"epochs": epochs, "iters": 0, "hooks": list(hooks), **train},
                       runtime={"work_dir": str(work_dir), "plot_samples": 0})


def records(work_dir, mode: str) -> list[dict]:
    return [r for r in RunLog(work_dir).read() if r["mode"] == mode]


# An improvement of 1.0 in mAP never happens: the first evaluation sets the best, the next stops the run.
NEVER_IMPROVES = {"type": "early_stopping", "monitor": "bbox_mAP", "patience": 1, "min_delta": 1.0}


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    engine = Engine.from_recipe(epoch_recipe(tmp_path, epochs=4, hooks=[NEVER_IMPROVES]))
    engine.fit()

    assert [r["iter"] for r in records(tmp_path, "val")] == [2, 4]  # epochs 1 and 2 of 4
    assert [r["iter"] for r in records(tmp_path, "train")] == [1, 2, 3, 4]
    (stop,) = records(tmp_path, "stop")
    assert stop["iter"] == 4 and "bbox_mAP did not improve for 1 evaluations" in stop["reason"]
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["iteration"] == 4 and checkpoint["stop_reason"] == stop["reason"]
    assert engine.iteration == 4 and engine.stop_reason == stop["reason"]


def test_sdk_run_exits_0_after_a_stop_and_resume_trains_and_writes_nothing_more(tmp_path, run_sdk):
    recipe = write_recipe(tmp_path / "recipe.toml", epoch_recipe(tmp_path / "run", epochs=4, hooks=[NEVER_IMPROVES]))
    code, out, err = run_sdk("run", recipe)
    assert code == 0, err
    assert "stopped at iteration 4" in out
    before, log_before = load_checkpoint(tmp_path / "run" / "last.pt"), (tmp_path / "run" / "log.jsonl").read_text()

    code, out, err = run_sdk("run", recipe, "--resume")

    assert code == 0, err
    assert "nothing to resume" in out
    after = load_checkpoint(tmp_path / "run" / "last.pt")
    assert after["iteration"] == 4
    assert all(torch.equal(after["model"][k], v) for k, v in before["model"].items())
    assert (tmp_path / "run" / "log.jsonl").read_text() == log_before


class StopAt:
    """An app's hook: stops the run at one iteration and records the events it saw."""

    def __init__(self, iteration: int):
        self.iteration, self.events = iteration, []

    def before_train(self, engine):
        self.events.append(("before_train", engine.iteration))

    def before_epoch(self, engine):
        self.events.append(("before_epoch", engine.epoch))

    def after_iter(self, engine, iteration, losses):
        assert isinstance(losses["loss"], float)
        if iteration == self.iteration:
            engine.stop_training(f"stop at {iteration}")

    def after_epoch(self, engine):
        self.events.append(("after_epoch", engine.epoch))

    def after_eval(self, engine, metrics):
        self.events.append(("after_eval", engine.iteration, "bbox_mAP" in metrics))

    def after_train(self, engine):
        self.events.append(("after_train", engine.iteration))


def test_stop_training_mid_epoch_checkpoints_evaluates_and_logs_the_reason(tmp_path):
    hook = StopAt(3)
    Engine.from_recipe(epoch_recipe(tmp_path, epochs=4), hooks=[hook]).fit()

    # The engine's own work for an event (the evaluation after an epoch) comes before the app's hooks.
    assert hook.events == [
        ("before_train", 0), ("before_epoch", 0), ("after_eval", 2, True), ("after_epoch", 1),
        ("before_epoch", 1), ("after_eval", 3, True), ("after_epoch", 2), ("after_train", 3),
    ]
    assert [r["iter"] for r in records(tmp_path, "val")] == [2, 3]  # the final evaluation at the stop
    assert records(tmp_path, "stop")[0]["reason"] == "stop at 3"
    assert load_checkpoint(tmp_path / "last.pt")["iteration"] == 3


class Boom:
    def __init__(self, at: int = 3):
        self.at = at

    def after_iter(self, engine, iteration, losses):
        if iteration == self.at:
            raise ValueError("the hook's own bug")


class BoomPlugin:
    @detsdk.hookimpl
    def detsdk_register_hooks(self, register):
        register("boom", Boom)


def test_a_raising_hook_is_named_with_its_plugin_and_the_last_checkpoint_stays_intact(tmp_path):
    get_registry().add_plugin("boomplugin", "0.1", BoomPlugin)
    recipe = epoch_recipe(tmp_path, epochs=2, hooks=[{"type": "boom", "at": 3}], checkpoint_every_iters=1)

    with pytest.raises(HookError) as error:
        Engine.from_recipe(recipe).fit()

    assert str(error.value) == (
        "hook 'boom' (train.hooks[0], plugin boomplugin) failed in after_iter: ValueError: the hook's own bug"
    )
    # The engine checkpoints each iteration before the recipe's hooks see it: last.pt holds iteration 3, whole.
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint["iteration"] == 3 and checkpoint["stop_reason"] is None and checkpoint["model"]


def test_an_app_hook_that_raises_is_named_by_its_class(tmp_path):
    with pytest.raises(HookError, match=r"^hook Boom \(passed to Engine\) failed in after_iter: ValueError"):
        Engine.from_recipe(epoch_recipe(tmp_path, epochs=2), hooks=[Boom(1)]).fit()


def test_a_hook_parameter_misspelt_in_the_recipe_gets_did_you_mean(tmp_path):
    recipe = load_recipe(epoch_recipe(tmp_path, hooks=[{"type": "early_stopping", "patiense": 3}]))
    with pytest.raises(RecipeError, match=r"unknown parameter 'patiense' for hook 'early_stopping' at "
                                          r"train.hooks\[0\].patiense \(did you mean 'patience'\?\)"):
        validate_recipe(recipe)


def test_an_unknown_hook_type_gets_did_you_mean(tmp_path):
    recipe = load_recipe(epoch_recipe(tmp_path, hooks=[{"type": "early_stoping"}]))
    with pytest.raises(Exception, match=r"early_stopping"):
        validate_recipe(recipe)


def test_sdk_list_hook_shows_the_built_in_hooks(run_sdk):
    code, out, err = run_sdk("list", "hook")
    assert code == 0, err
    for name in ("early_stopping", "pipeline_switch", "mlflow"):
        assert name in out


def test_early_stopping_keeps_its_count_across_resume():
    from detsdk.builtin.hooks.early_stopping import EarlyStopping

    class FakeEngine:
        reason = None

        def stop_training(self, reason):
            self.reason = reason

    first = EarlyStopping(monitor="loss", mode="min", patience=2)
    first.after_eval(FakeEngine(), {"loss": 1.0})
    first.after_eval(FakeEngine(), {"loss": 1.5})
    resumed, engine = EarlyStopping(monitor="loss", mode="min", patience=2), FakeEngine()
    resumed.load_state_dict(first.state_dict())
    resumed.after_eval(engine, {"loss": 1.2})
    assert engine.reason is not None and "loss did not improve for 2 evaluations" in engine.reason


def test_early_stopping_names_the_metrics_when_monitor_is_missing():
    from detsdk.builtin.hooks.early_stopping import EarlyStopping

    with pytest.raises(RecipeError, match=r"monitor 'bbox_map' is not a metric.*did you mean 'bbox_mAP'"):
        EarlyStopping(monitor="bbox_map").after_eval(None, {"bbox_mAP": 0.1, "bbox_mAP_50": 0.2})


# -- overrides -------------------------------------------------------------------------------
def test_overrides_may_be_a_dict(tmp_path):
    engine = Engine.from_recipe(epoch_recipe(tmp_path), overrides={"train.epochs": 1, "train.optimizer.lr": 0.5})
    assert engine.config["train"]["epochs"] == 1 and engine.config["train"]["optimizer"]["lr"] == 0.5
    assert engine.recipe.source_of("train.epochs") == "overrides['train.epochs']"


def test_a_nested_override_into_a_default_table_merges_with_the_default(tmp_path):
    engine = Engine.from_recipe(epoch_recipe(tmp_path), overrides=['eval.metric.iou_types=["bbox","segm"]'])
    assert engine.config["eval"]["metric"] == {"type": "coco", "iou_types": ["bbox", "segm"]}
    with pytest.raises(RecipeError, match=r"unknown parameter 'iou_type' for metric 'coco'.*did you mean 'iou_types'"):
        Engine.from_recipe(epoch_recipe(tmp_path), overrides={"eval.metric.iou_type": ["bbox"]})


def test_max_keep_ckpts_keeps_the_newest_numbered_checkpoints_and_best_metric_picks_best_pt(tmp_path):
    Engine.from_recipe(epoch_recipe(tmp_path, epochs=3, max_keep_ckpts=2, best_metric="bbox_mAP_50")).fit()

    assert sorted(p.name for p in tmp_path.glob("epoch_*.pt")) == ["epoch_2.pt", "epoch_3.pt"]
    assert load_checkpoint(tmp_path / "epoch_2.pt")["iteration"] == 4
    evaluations = records(tmp_path, "val")
    best = max(evaluations, key=lambda r: r["bbox_mAP_50"])  # the first of equal ones: later ones do not beat it
    assert load_checkpoint(tmp_path / "best.pt")["iteration"] == best["iter"]


def test_best_metric_that_no_evaluation_has_is_named(tmp_path):
    with pytest.raises(RecipeError, match=r"train.best_metric = 'bbox_AP'.*did you mean 'bbox_mAP'"):
        Engine.from_recipe(epoch_recipe(tmp_path, epochs=1, best_metric="bbox_AP")).fit()


def test_typed_tables_carry_the_recipe_defaults(tmp_path):
    from detsdk.recipe.config import TrainConfig
    from detsdk.recipe.schema import DEFAULTS

    engine = Engine.from_recipe(epoch_recipe(tmp_path, epochs=3))
    assert engine.settings.train.epochs == 3 and engine.settings.train.grad_clip == 0.0
    assert engine.settings.runtime.dist_timeout == 600.0 and engine.settings.data.batch_size == 4
    assert DEFAULTS["train"]["log_interval"] == TrainConfig().log_interval


# -- a transform declares what it is -------------------------------------------------------------
class PluginNormalize:
    """A plugin's own normalize: not the built-in class, but it declares the role."""

    transform_role = "normalize"

    def __init__(self):
        self.mean, self.std = [100.0, 110.0, 120.0], [50.0, 55.0, 60.0]

    def __call__(self, sample):
        return {**sample, "image": (sample["image"] - self.mean) / self.std}


class PluginResize:
    """A plugin's resize: TTA rescales it through ``with_scale``."""

    transform_role = "resize"

    def __init__(self, scale=(64, 64)):
        self.scale = tuple(scale)

    def with_scale(self, scale):
        return PluginResize(scale)

    def __call__(self, sample):
        return sample


def test_a_plugin_normalize_that_declares_its_role_moves_to_the_device():
    from detsdk.data.device_normalize import DeferredNormalize, defer_normalize

    transforms, device_normalize = defer_normalize([PluginNormalize()])
    assert isinstance(transforms[0], DeferredNormalize) and device_normalize is not None
    assert transforms[0].mean == [100.0, 110.0, 120.0]
    assert defer_normalize([lambda s: s])[1] is None  # one that declares nothing stays where it is


def test_tta_rescales_and_drops_flips_by_their_declared_roles():
    from detsdk.engine.tta import TTASettings, variant_pipelines

    class PluginFlip:
        transform_role = "random_flip"

        def __call__(self, sample):
            return sample

    (pipeline,) = variant_pipelines([PluginFlip(), PluginResize()], TTASettings(scales=((96.0, 80.0),)))
    assert len(pipeline) == 1 and isinstance(pipeline[0], PluginResize) and pipeline[0].scale == (96.0, 80.0)
