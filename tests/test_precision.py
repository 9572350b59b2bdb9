"""[train] precision and optimisation: amp, accumulation, clipping, channels_last, compile, auto_scale_lr, determinism."""

from __future__ import annotations

import math
import re

import pytest
import torch
from conftest import tiny_recipe

from detsdk import Engine, hookimpl
from detsdk.errors import RecipeError
from detsdk.plugins import get_registry

CLASSES = ["circle", "square", "triangle"]


def quick_recipe(work_dir, train=None, runtime=None) -> dict:
    """The tiny recipe without evaluation or plots: training only, a second or two."""
    recipe = tiny_recipe(work_dir, train={"iters": 2, **(train or {})},
                         runtime={"work_dir": str(work_dir), "plot_samples": 0, **(runtime or {})})
    recipe["data"].pop("val")
    return recipe


def one_stage_recipe(work_dir, batch_size: int, accumulate: int) -> dict:
    """RetinaNet whose loss is a mean over images, frozen BN, no random transform: batch-size independent."""
    recipe = quick_recipe(work_dir, train={"accumulate": accumulate, "optimizer": {"type": "sgd", "lr": 0.01}})
    recipe["model"] = {
        "type": "retinanet",
        "backbone": {"type": "resnet", "depth": 18, "frozen_stages": -1, "norm": "frozen_bn"},
        "neck": {"type": "fpn", "out_channels": 32, "start_level": 1, "extra": "p6p7_on_p5"},
        "head": {"type": "retina_head", "anchor_sizes": [[16], [32], [64], [128], [256]]},
    }
    recipe["data"]["batch_size"] = batch_size
    recipe["data"]["train"]["pipeline"] = [{"type": "normalize"}, {"type": "pad", "size_divisor": 32}]
    return recipe


def test_bf16_autocast_trains_on_the_cpu_with_finite_losses(tmp_path):
    seen = []

    class BackboneDtype:
        @hookimpl
        def detsdk_on_train_start(self, engine):
            engine.model.backbone.register_forward_hook(lambda m, i, out: seen.append(next(iter(out.values())).dtype))

    get_registry().add_plugin("dtype-probe", "0", BackboneDtype)
    engine = Engine.from_recipe(quick_recipe(tmp_path, train={"amp": "bf16"}))
    before = {k: v.clone() for k, v in engine._ensure_model(CLASSES, "test").state_dict().items()}
    engine.fit()
    assert seen == [torch.bfloat16, torch.bfloat16]  # the forward really ran under autocast
    train = [r for r in engine.log.read() if r["mode"] == "train"]
    assert len(train) == 2 and all(math.isfinite(r[k]) for r in train for k in r if k.startswith("loss"))
    after = engine.model.state_dict()
    assert all(after[k].dtype == v.dtype for k, v in before.items())  # weights stay float32
    assert any(not torch.equal(after[k], v) for k, v in before.items())


def test_fp16_without_cuda_is_a_recipe_error_that_suggests_bf16(tmp_path):
    engine = Engine.from_recipe(quick_recipe(tmp_path, train={"amp": "fp16"}), device="cpu")
    with pytest.raises(RecipeError, match=r'train.amp = "fp16" needs CUDA.*use train.amp = "bf16"'):
        engine.fit()


def test_accumulating_n_batches_of_b_gives_the_weights_of_one_batch_of_n_times_b(tmp_path):
    # RetinaNet's loss is a mean of per-image losses and nothing samples at random: the gradient of
    # a batch of 4 is the mean of the gradients of its two halves. Only float summation order differs.
    whole = Engine.from_recipe(one_stage_recipe(tmp_path / "whole", batch_size=4, accumulate=1))
    whole.fit()
    halves = Engine.from_recipe(one_stage_recipe(tmp_path / "halves", batch_size=2, accumulate=2))
    halves.fit()
    assert halves.iteration == whole.iteration == 2 and halves.iters_per_epoch == 2
    for name, tensor in whole.model.state_dict().items():
        torch.testing.assert_close(halves.model.state_dict()[name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    first_whole, first_halves = (e.log.read()[0]["loss"] for e in (whole, halves))
    assert first_halves == pytest.approx(first_whole, rel=1e-5)


def test_grad_clip_bounds_the_first_sgd_update(tmp_path):
    optimizer = {"type": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}
    engine = Engine.from_recipe(quick_recipe(tmp_path, train={"iters": 1, "grad_clip": 1e-3, "optimizer": optimizer}))
    model = engine._ensure_model(CLASSES, "test")
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    engine.fit()
    step = torch.cat([(p.detach() - before[n]).flatten() for n, p in model.named_parameters() if n in before])
    assert 0 < step.norm() <= 0.1 * 1e-3 * 1.001  # lr x max norm


def test_auto_scale_lr_scales_by_batch_times_processes_times_accumulate(tmp_path, capsys):
    recipe = quick_recipe(tmp_path, train={"accumulate": 2, "auto_scale_lr": {"base_batch_size": 16},
                                           "optimizer": {"type": "sgd", "lr": 0.02}})
    engine = Engine.from_recipe(recipe)
    engine.fit()
    assert engine.optimizer.param_groups[0]["initial_lr"] == pytest.approx(0.02 * 4 * 2 / 16)
    assert "auto_scale_lr: lr 0.02 -> 0.01 (total batch 8 = 4 x 1 process x 2 accumulate" in capsys.readouterr().out


def test_channels_last_and_compile_wire_through_to_the_model(tmp_path):
    # The inductor backend needs about a minute to compile on this CPU; "eager" goes through
    # torch.compile (Dynamo) the same way without generating code.
    recipe = quick_recipe(tmp_path, train={"channels_last": True, "compile": {"backend": "eager"}})
    engine = Engine.from_recipe(recipe)
    engine.fit()
    conv = next(p for p in engine.model.backbone.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert engine.model.backbone._compiled_call_impl is not None
    assert not any("_orig_mod" in key for key in engine.model.state_dict())  # checkpoints keep their names


def test_deterministic_mode_turns_on_deterministic_algorithms(tmp_path):
    try:
        Engine.from_recipe(quick_recipe(tmp_path, train={"iters": 1}, runtime={"deterministic": True})).fit()
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


@pytest.mark.parametrize(
    ("table", "key", "value", "message"),
    [
        ("train", "amp", "fp32", 'expected "bf16", "fp16" or false'),
        ("train", "accumulate", 0, "expected an integer >= 1"),
        ("train", "ema", {"momentun": 0.001}, "unknown key 'momentun' (did you mean 'momentum'?)"),
        ("train", "ema", {"momentum": 2.0}, "'momentum' = 2.0 is not valid"),
        ("train", "auto_scale_lr", 16, "expected false, true or a table like { base_batch_size = 16 }"),
        ("data", "prefetch_factor", 0, "expected an integer >= 1"),
        ("data", "normalize_on_device", "yes", 'expected true, false or "auto"'),
    ],
)
def test_bad_precision_and_loader_values_are_recipe_errors_naming_the_key(tmp_path, table, key, value, message):
    recipe = quick_recipe(tmp_path)
    recipe[table][key] = value
    with pytest.raises(RecipeError, match=rf"'{table}\.{key}' = .*{re.escape(message)}"):
        Engine.from_recipe(recipe)
