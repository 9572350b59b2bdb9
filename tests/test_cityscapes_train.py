"""The plugin's Mask R-CNN recipe trains on a tiny Cityscapes tree and evaluates with the ``cityscapes`` metric."""

from __future__ import annotations

import json

import pytest
from test_cityscapes_data import make_cityscapes_tree

from detsdk import Engine
from detsdk.plugins import get_registry, reset_registry


@pytest.fixture
def cityscapes_plugin(monkeypatch):
    monkeypatch.setenv("DETSDK_LOAD_PLUGINS", "cityscapes")
    monkeypatch.setenv("DETSDK_STRICT_PLUGINS", "1")
    reset_registry()
    return get_registry()


def tiny_overrides(root, work_dir) -> dict:
    """The shipped recipe with a small backbone and heads, 64x128 frames and three iterations."""
    pipeline = [{"type": "normalize"}, {"type": "pad", "size_divisor": 32}]
    return {
        "base": ["cityscapes:mask_rcnn_r50_fpn_1x_cityscapes.toml"],
        "model": {
            "backbone": {"depth": 18, "frozen_stages": -1, "norm": "bn"},
            "neck": {"out_channels": 32},
            "rpn_head": {"anchor_sizes": [[8], [16], [32], [64], [128]], "post_nms_top_n_train": 200,
                         "post_nms_top_n_test": 100},
            "box_head": {"fc_channels": 64, "batch_size_per_image": 64, "score_thresh": 0.0},
            "mask_head": {"conv_channels": 16, "num_convs": 1},
        },
        "data": {
            "batch_size": 2,
            "num_workers": 0,
            "train": {
                "times": 2,
                "dataset": {"root": str(root)},
                # The recipe's multi-scale range, scaled down to the tiny frames.
                "pipeline": [{"type": "resize", "scale": [[128, 48], [128, 64]], "multiscale_mode": "range"},
                             {"type": "random_flip", "p": 0.5}, *pipeline],
            },
            "val": {"root": str(root), "pipeline": [{"type": "resize", "scale": [128, 64]}, *pipeline]},
            "test": {"root": str(root)},
        },
        "train": {"iters": 3, "log_interval": 1, "eval_interval": 0,
                  "scheduler": {"milestones": [2], "unit": "iter", "warmup_iters": 2}},
        "runtime": {"work_dir": str(work_dir), "load_from": "", "plot_samples": 0},
    }


def test_mask_rcnn_recipe_trains_and_ranks_checkpoints_by_the_official_ap(tmp_path, cityscapes_plugin):
    root = tmp_path / "cityscapes"
    make_cityscapes_tree(root)
    engine = Engine.from_recipe(tiny_overrides(root, tmp_path / "run"))
    assert engine.config["train"]["optimizer"] == {"type": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
    metrics = engine.fit()

    assert engine.classes == ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    assert engine.model.roi_heads.box_predictor.cls_score.out_features == 9  # 8 classes + background
    assert list(metrics)[:2] == ["cityscapes_AP", "cityscapes_AP50"]
    assert {"bbox_mAP", "segm_mAP", "segm_mAP_50"} <= metrics.keys()
    assert all(value == -1.0 or 0.0 <= value <= 1.0 for value in metrics.values())
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    assert (tmp_path / "run" / "best.pt").exists() and engine.best_score == metrics["cityscapes_AP"]


def test_faster_rcnn_recipe_reads_no_masks_and_scores_coco_boxes(cityscapes_plugin):
    from detsdk.recipe import load_recipe, validate_recipe

    recipe = load_recipe({"base": ["cityscapes:faster_rcnn_r50_fpn_1x_cityscapes.toml"]})
    validate_recipe(recipe)
    data = recipe.data
    assert data["model"]["type"] == "faster_rcnn" and "mask_head" not in data["model"]
    assert data["data"]["train"]["type"] == "repeat" and data["data"]["train"]["times"] == 8
    assert data["data"]["train"]["dataset"]["with_masks"] is False and data["data"]["val"]["with_masks"] is False
    assert data["eval"]["metric"] == {"type": "coco", "iou_types": ["bbox"]}
    assert data["train"]["scheduler"]["milestones"] == [7] and data["train"]["epochs"] == 8
