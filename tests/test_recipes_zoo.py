"""Shipped recipes (``detsdk:<name>.toml``): MMDetection's model zoo layout, inherited by user recipes."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, write_recipe

from detsdk.cli import cli
from detsdk.recipe import load_recipe, validate_recipe, with_defaults

RECIPES = REPO / "sdk" / "detsdk" / "recipes"
SHIPPED = sorted(str(p.relative_to(RECIPES)) for p in RECIPES.rglob("*.toml"))
TOP_LEVEL = [name for name in SHIPPED if "/" not in name]
FINETUNE = REPO / "examples" / "finetune" / "recipe.toml"
# RTMDet's recipes switch pipelines with train.hooks (pipeline_switch, issue #10): until that lands they
# are validated without it (test_rtmdet_recipes_validate_apart_from_their_stage_two_hook). Re-enable at merge.
RTMDET = [name for name in SHIPPED if name.startswith("rtmdet/")]
RTMDET_SIZES = {"tiny": (0.167, 0.375, 96, 1, False), "s": (0.33, 0.5, 128, 1, False), "m": (0.67, 0.75, 192, 2, True),
                "l": (1.0, 1.0, 256, 3, True), "x": (1.33, 1.25, 320, 4, True)}


def test_the_zoo_ships_mmdetections_base_layout_and_top_level_recipes():
    assert {
        "_base/models/faster_rcnn_r50_fpn.toml", "_base/models/mask_rcnn_r50_fpn.toml",
        "_base/models/retinanet_r50_fpn.toml", "_base/models/fcos_r50_fpn.toml",
        "_base/datasets/coco_detection.toml", "_base/datasets/coco_instance.toml",
        "_base/schedules/schedule_1x.toml", "_base/schedules/schedule_2x.toml", "_base/default_runtime.toml",
    } <= set(SHIPPED)
    assert set(TOP_LEVEL) == {
        "faster_rcnn_r50_fpn_1x_coco.toml", "faster_rcnn_r50_fpn_2x_coco.toml", "faster_rcnn_r50_fpn_v2_1x_coco.toml",
        "mask_rcnn_r50_fpn_1x_coco.toml", "retinanet_r50_fpn_1x_coco.toml", "fcos_r50_fpn_1x_coco.toml",
    }


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_recipe_loads_resolves_and_validates(name):
    recipe = load_recipe({"base": [f"detsdk:{name}"]})
    validate_recipe(recipe)
    assert recipe.data


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_recipes_are_complete_coco_recipes_with_a_resnet50_backbone(name):
    data = load_recipe(RECIPES / name).data
    assert set(data) == {"model", "data", "train", "eval", "runtime"}
    assert data["model"]["num_classes"] == "auto"
    assert data["model"]["backbone"] == {
        "type": "resnet", "depth": 50, "frozen_stages": 1, "norm": "frozen_bn", "pretrained": "IMAGENET1K_V1",
        "out_indices": [0, 1, 2, 3],
    }
    assert data["data"]["train"]["ann_file"] == "data/coco/annotations/instances_train2017.json"
    assert [step["type"] for step in data["data"]["train"]["pipeline"]] == ["resize", "random_flip", "normalize", "pad"]
    assert [step["type"] for step in data["data"]["test"]["pipeline"]] == ["resize", "normalize", "pad"]
    assert "work_dir" not in data["runtime"]  # runs/<the running recipe's name>, not the shipped one's


@pytest.mark.parametrize(
    ("name", "epochs", "milestones", "lr"),
    [
        ("faster_rcnn_r50_fpn_1x_coco.toml", 12, [8, 11], 0.02),
        ("faster_rcnn_r50_fpn_2x_coco.toml", 24, [16, 22], 0.02),
        ("mask_rcnn_r50_fpn_1x_coco.toml", 12, [8, 11], 0.02),
        ("retinanet_r50_fpn_1x_coco.toml", 12, [8, 11], 0.01),
        ("fcos_r50_fpn_1x_coco.toml", 12, [8, 11], 0.01),
    ],
)
def test_schedules_follow_mmdetection(name, epochs, milestones, lr):
    train = load_recipe(RECIPES / name).data["train"]
    assert train["epochs"] == epochs and train["scheduler"]["milestones"] == milestones
    assert train["optimizer"] == {"type": "sgd", "lr": lr, "momentum": 0.9, "weight_decay": 1e-4}
    assert train["scheduler"]["type"] == "step" and train["scheduler"]["warmup_iters"] == 500


def test_mask_rcnn_recipe_reads_masks_and_scores_segm():
    data = load_recipe(RECIPES / "mask_rcnn_r50_fpn_1x_coco.toml").data
    assert all(data["data"][split]["with_masks"] for split in ("train", "val", "test"))
    assert data["eval"]["metric"]["iou_types"] == ["bbox", "segm"]
    assert data["model"]["mask_head"]["type"] == "fcn_mask_head"


def test_a_user_recipe_inherits_a_shipped_one_and_overrides_it(tmp_path):
    user = write_recipe(tmp_path / "my_detector.toml", {
        "base": ["detsdk:faster_rcnn_r50_fpn_1x_coco.toml"],
        "model": {"box_head": {"score_thresh": 0.3}},
        "data": {"train": {"ann_file": "my/train.json", "images": "my/images"}},
        "runtime": {"load_from": "checkpoints/coco.pth"},
    })
    recipe = load_recipe(user, ["train.optimizer.lr=0.005"])
    validate_recipe(recipe)
    config = with_defaults(recipe.data)
    assert config["train"]["epochs"] == 12 and config["train"]["scheduler"]["milestones"] == [8, 11]
    assert config["train"]["optimizer"]["lr"] == 0.005 and config["train"]["optimizer"]["momentum"] == 0.9
    assert config["model"]["num_classes"] == "auto"
    assert config["model"]["box_head"]["score_thresh"] == 0.3 and config["model"]["box_head"]["fc_channels"] == 1024
    assert config["data"]["train"]["ann_file"] == "my/train.json" and config["data"]["train"]["filter_empty"] is True
    assert config["runtime"]["work_dir"] == ""  # the engine makes it runs/my_detector
    assert recipe.source_of("train.epochs").endswith("recipes/_base/schedules/schedule_1x.toml")  # the base that set it
    assert recipe.source_of("model.box_head.score_thresh") == str(user)


def test_sdk_list_recipe_shows_the_top_level_recipes_not_the_bases():
    result = CliRunner().invoke(cli, ["list", "recipe"])
    assert result.exit_code == 0, result.output
    listed = {line.strip() for line in result.output.splitlines() if line.strip().startswith("detsdk:")}
    assert listed == {f"detsdk:{name}" for name in TOP_LEVEL + RTMDET}  # model folders (rtmdet/) too


def test_package_data_globs_ship_every_recipe_file():
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["detsdk"]
    package = REPO / "sdk" / "detsdk"
    for path in RECIPES.rglob("*.toml"):
        relative = str(path.relative_to(package))
        # setuptools globs recursively: "**/" also matches no folder at all.
        assert any(fnmatch.fnmatch(relative, g) or fnmatch.fnmatch(relative, g.replace("**/", "")) for g in globs), relative


def test_the_finetune_example_resolves_and_validates_with_the_seed_documents_settings():
    recipe = load_recipe(FINETUNE)
    validate_recipe(recipe)
    config = with_defaults(recipe.data)
    assert config["model"]["num_classes"] == "auto" and config["model"]["type"] == "faster_rcnn"
    assert config["train"]["epochs"] == 8
    assert config["train"]["optimizer"] == {"type": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
    assert config["train"]["scheduler"] == {
        "type": "step", "milestones": [7], "unit": "epoch", "gamma": 0.1, "warmup_iters": 500, "warmup_ratio": 0.001,
    }
    assert config["runtime"]["load_from"].endswith(".pth")
    assert config["data"]["train"]["type"] == "coco" and Path(config["data"]["train"]["ann_file"]).suffix == ".json"


@pytest.mark.parametrize("size", list(RTMDET_SIZES))
def test_rtmdet_recipes_follow_mmdetection_with_a_stage_two_for_the_last_20_epochs(size):
    from detsdk.engine.build import build_transforms

    recipe = load_recipe(RECIPES / "rtmdet" / f"rtmdet_{size}_8xb32-300e_coco.toml")
    validate_recipe(recipe)
    data = recipe.data
    (switch,) = data["train"]["hooks"]
    # Epochs 281-300 (1-based) run stage two: MMEngine's switch_epoch = 280 counts completed epochs.
    assert switch["type"] == "pipeline_switch" and switch["switch_epoch"] == 281
    stage_two = build_transforms(switch, "train.hooks[0]")
    assert [type(t).__name__ for t in stage_two][:2] == ["RandomResize", "RandomCrop"]
    deepen, widen, channels, blocks, exp_on_reg = RTMDET_SIZES[size]
    model = data["model"]
    assert (model["backbone"]["deepen_factor"], model["backbone"]["widen_factor"]) == (deepen, widen)
    assert (model["neck"]["out_channels"], model["neck"]["num_csp_blocks"]) == (channels, blocks)
    assert (model["head"]["feat_channels"], model["head"]["exp_on_reg"]) == (channels, exp_on_reg)
    assert data["train"]["optimizer"]["lr"] == 0.004 and data["train"]["ema"]["momentum"] == 0.0002
    assert data["train"]["scheduler"]["begin"] == 150 and data["train"]["epochs"] == 300
