"""Backbones beyond ResNet: ResNeXt, MobileNetV3, ConvNeXt, Swin (smallest variants, 64-px images, CPU)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torchvision
from conftest import tiny_recipe
from torch import nn
from torchvision.models import get_model_weights
from torchvision.ops import StochasticDepth

from detsdk.builtin.models.convnext import ConvNeXt
from detsdk.builtin.models.mobilenet import MobileNetV3
from detsdk.builtin.models.resnet import ResNeXt
from detsdk.builtin.models.swin import SwinTransformer
from detsdk.engine.build import build_model
from detsdk.errors import DetSDKWarning, RecipeError

H, W = 64, 96  # non-square, multiples of 32 (what the pad transform's size_divisor gives)

# The cheapest variant of each family: (recipe table, torchvision model it wraps)
SMALLEST = {
    "resnext": ({"type": "resnext", "depth": 50, "groups": 32, "width_per_group": 4}, "resnext50_32x4d"),
    "mobilenet_v3": ({"type": "mobilenet_v3", "arch": "small"}, "mobilenet_v3_small"),
    "convnext": ({"type": "convnext", "arch": "tiny"}, "convnext_tiny"),
    "swin": ({"type": "swin", "arch": "tiny"}, "swin_t"),
    "swin_v2": ({"type": "swin", "arch": "tiny", "version": 2}, "swin_v2_t"),
}
FACTORIES = {"resnext": ResNeXt, "mobilenet_v3": MobileNetV3, "convnext": ConvNeXt, "swin": SwinTransformer}

# Every variant: (factory, arguments, expected out_channels at strides 4, 8, 16, 32)
VARIANTS = {
    "resnext50_32x4d": (ResNeXt, {"depth": 50, "groups": 32, "width_per_group": 4}, [256, 512, 1024, 2048]),
    "resnext101_32x8d": (ResNeXt, {"depth": 101, "groups": 32, "width_per_group": 8}, [256, 512, 1024, 2048]),
    "resnext101_64x4d": (ResNeXt, {"depth": 101, "groups": 64, "width_per_group": 4}, [256, 512, 1024, 2048]),
    "mobilenet_v3_large": (MobileNetV3, {"arch": "large"}, [24, 40, 112, 960]),
    "mobilenet_v3_small": (MobileNetV3, {"arch": "small"}, [16, 24, 48, 576]),
    "convnext_tiny": (ConvNeXt, {"arch": "tiny"}, [96, 192, 384, 768]),
    "convnext_small": (ConvNeXt, {"arch": "small"}, [96, 192, 384, 768]),
    "convnext_base": (ConvNeXt, {"arch": "base"}, [128, 256, 512, 1024]),
    "convnext_large": (ConvNeXt, {"arch": "large"}, [192, 384, 768, 1536]),
    **{
        f"swin_{'v2_' if version == 2 else ''}{letter}": (
            SwinTransformer, {"arch": arch, "version": version}, channels
        )
        for version in (1, 2)
        for arch, letter, channels in [
            ("tiny", "t", [96, 192, 384, 768]),
            ("small", "s", [96, 192, 384, 768]),
            ("base", "b", [128, 256, 512, 1024]),
        ]
    },
}


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def build(family: str, **params) -> nn.Module:
    table = {k: v for k, v in SMALLEST[family][0].items() if k != "type"}
    return FACTORIES[family.removesuffix("_v2")](**{**table, **params})


def random_torchvision_state_dict(model_name: str) -> dict[str, torch.Tensor]:
    state = torchvision.models.get_model(model_name).state_dict()
    return {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}


def assert_holds(backbone: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = backbone.state_dict()
    loaded = [k for k in state if k in own]
    assert len(loaded) > len(own) // 2
    for key in loaded:
        assert torch.equal(own[key], state[key]), key


# -- outputs ------------------------------------------------------------------
@pytest.mark.parametrize("family", list(SMALLEST))
def test_outputs_are_c2_to_c5_nchw_matching_out_channels_and_strides(family):
    backbone = build(family).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, H, W))
    assert list(features) == ["c2", "c3", "c4", "c5"]
    assert [f.shape[1] for f in features.values()] == backbone.out_channels
    assert [(H // f.shape[2], W // f.shape[3]) for f in features.values()] == [(s, s) for s in backbone.strides]
    assert backbone.strides == [4, 8, 16, 32]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_declares_the_shapes_it_returns(variant):
    factory, params, channels = VARIANTS[variant]
    with torch.device("meta"):  # shapes only: no memory, no compute, even for ConvNeXt-large
        backbone = factory(**params)
        features = backbone(torch.empty(1, 3, H, W))
    assert backbone.out_channels == [f.shape[1] for f in features.values()] == channels
    assert backbone.strides == [H // f.shape[2] for f in features.values()] == [4, 8, 16, 32]


@pytest.mark.parametrize("family", ["resnext", "mobilenet_v3", "convnext", "swin"])
def test_out_indices_select_stages_and_skip_later_ones(family):
    backbone = build(family, out_indices=[1, 2])
    features = backbone(torch.randn(1, 3, H, W))
    assert list(features) == ["c3", "c4"]
    assert [f.shape[1] for f in features.values()] == backbone.out_channels
    assert backbone.strides == [8, 16]
    assert backbone.stage_modules(4) == []  # not built: no unused parameters under DDP


def test_swin_accepts_sizes_that_are_not_multiples_of_the_window():
    backbone = build("swin").eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 100, 72))
    assert [tuple(f.shape[2:]) for f in features.values()] == [(25, 18), (13, 9), (7, 5), (4, 3)]


# -- detectors ------------------------------------------------------------------
@pytest.mark.parametrize("family", list(SMALLEST))
def test_composes_with_fpn_and_trains_one_faster_rcnn_step(family, tmp_path):
    spec = tiny_recipe(tmp_path)["model"]
    spec["backbone"] = dict(SMALLEST[family][0])
    model = build_model(spec, num_classes=3).train()
    last = [p for p in model.backbone.stage_modules(4)[-1].parameters() if p.requires_grad][0]
    before = last.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    targets = [{"boxes": torch.tensor([[4.0, 6, 40, 44]]), "labels": torch.tensor([1])}] * 2
    losses = model(torch.randn(2, 3, H, W), targets)
    assert all(torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(before, last)


def test_mobilenet_strides_8_to_32_compose_with_four_anchor_levels(tmp_path):
    spec = tiny_recipe(tmp_path)["model"]
    spec["backbone"] = {"type": "mobilenet_v3", "arch": "small", "out_indices": [1, 2, 3]}
    spec["neck"]["num_outs"] = 4
    spec["rpn_head"]["anchor_sizes"] = [[16], [32], [64], [128]]
    model = build_model(spec, num_classes=3).train()
    targets = [{"boxes": torch.tensor([[4.0, 6, 40, 44]]), "labels": torch.tensor([1])}]
    losses = model(torch.randn(1, 3, H, W), targets)
    assert all(torch.isfinite(loss) for loss in losses.values())


# -- frozen stages ----------------------------------------------------------------
FROZEN_2 = {  # parameter-name prefixes of the stem and stages 1-2
    "resnext": ("conv1.", "bn1.", "layer1.", "layer2."),
    "mobilenet_v3": tuple(f"features.{i}." for i in range(4)),  # small: stem, stride-4 block, stride-8 blocks
    "convnext": (*(f"features.{i}." for i in range(4)), "out_norms.c2.", "out_norms.c3."),
    "swin": (*(f"features.{i}." for i in range(4)), "out_norms.c2.", "out_norms.c3."),
}


@pytest.mark.parametrize("family", list(FROZEN_2))
def test_frozen_stages_stop_gradients_to_the_stem_and_first_stages(family):
    backbone = build(family, frozen_stages=2)
    for name, param in backbone.named_parameters():
        assert param.requires_grad == (not name.startswith(FROZEN_2[family])), name


@pytest.mark.parametrize("family", list(FROZEN_2))
def test_frozen_stages_minus_one_trains_everything(family):
    assert all(p.requires_grad for p in build(family, frozen_stages=-1).parameters())


def test_frozen_stages_keep_their_norms_in_eval_mode_when_training():
    backbone = MobileNetV3(arch="small", norm="bn", frozen_stages=1).train()
    assert not backbone.features[0][1].training and not backbone.features[1].block[0][1].training
    assert backbone.features[2].block[0][1].training


@pytest.mark.parametrize("factory", [ConvNeXt, SwinTransformer])
def test_drop_path_rate_is_the_rate_of_the_last_block(factory):
    backbone = factory(arch="tiny", drop_path_rate=0.3)
    rates = [m.p for m in backbone.modules() if isinstance(m, StochasticDepth)]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)


# -- pretrained ---------------------------------------------------------------------
@pytest.mark.parametrize("family", ["resnext", "mobilenet_v3", "convnext", "swin_v2"])
def test_pretrained_weights_name_loads_through_torchvision_weights_cache(family, tmp_path, monkeypatch):
    table, model_name = SMALLEST[family]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    state = random_torchvision_state_dict(model_name)
    torch.save(state, checkpoints / os.path.basename(get_model_weights(model_name).IMAGENET1K_V1.url))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DetSDKWarning)  # classifier skipped and output norms added silently
        backbone = build(family, pretrained="IMAGENET1K_V1")
    assert_holds(backbone, state)


def test_pretrained_local_file_loads_a_nested_state_dict(tmp_path):
    state = random_torchvision_state_dict("mobilenet_v3_small")
    path = tmp_path / "mobilenet.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    assert_holds(MobileNetV3(arch="small", pretrained=str(path)), state)


def test_pretrained_weights_of_unbuilt_stages_are_skipped_without_warning(tmp_path):
    state = random_torchvision_state_dict("mobilenet_v3_small")
    path = tmp_path / "mobilenet.pth"
    torch.save(state, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DetSDKWarning)
        backbone = MobileNetV3(arch="small", out_indices=[0, 1], pretrained=str(path))
    assert_holds(backbone, state)


def test_unknown_pretrained_name_is_a_recipe_error_listing_the_weights():
    with pytest.raises(RecipeError, match="for convnext_tiny.*valid: IMAGENET1K_V1, DEFAULT"):
        ConvNeXt(arch="tiny", pretrained="IMAGENET")


# -- invalid arguments ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("factory", "params", "message"),
    [
        (ResNeXt, {"depth": 50, "groups": 32, "width_per_group": 8},
         "valid: depth=50 groups=32 width_per_group=4, depth=101 groups=32 width_per_group=8, "
         "depth=101 groups=64 width_per_group=4"),
        (MobileNetV3, {"arch": "medium"}, "unknown arch 'medium'.*valid: large, small"),
        (ConvNeXt, {"arch": "tinyy"}, "did you mean 'tiny'.*valid: tiny, small, base, large"),
        (SwinTransformer, {"arch": "large"}, "unknown arch 'large'.*valid: tiny, small, base"),
        (SwinTransformer, {"version": 3}, "version must be 1 or 2"),
        (MobileNetV3, {"norm": "gn"}, "unknown norm 'gn'.*valid: frozen_bn, bn"),
    ],
)
def test_invalid_variant_is_a_recipe_error_naming_the_valid_ones(factory, params, message):
    with pytest.raises(RecipeError, match=message):
        factory(**params)
