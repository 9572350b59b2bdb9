"""``sdk convert mmdet``: MMDetection 2.x checkpoints (real key names and shapes) to det-sdk checkpoints."""

from __future__ import annotations

import tomllib

import pytest
import torch
from click.testing import CliRunner

from detsdk.cli import cli
from detsdk.engine.build import build_model
from detsdk.engine.checkpoint import load_checkpoint
from detsdk.recipe import load_recipe, with_defaults

RECIPE = "detsdk:faster_rcnn_r50_fpn_1x_coco.toml"
COCO_CLASSES = tuple(f"coco_{i}" for i in range(80))
UNKNOWN_KEY = "roi_head.bbox_head.fc_iou.weight"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def recipe_model(num_classes: int = 80):
    config = with_defaults(load_recipe({"base": [RECIPE]}).data)
    return build_model(config["model"], num_classes, for_inference=True)


def mmdet_faster_rcnn_r50_fpn(num_classes: int = 80) -> dict[str, torch.Tensor]:
    """A Faster R-CNN R50-FPN ``state_dict`` as MMDetection 2.x saves it, with random values.

    The ResNet keys are torchvision's (MMDetection's ``style='pytorch'`` ResNet names them
    alike; its BatchNorm layers also save ``num_batches_tracked``); the others follow
    MMDetection's ``FPN`` (ConvModule ``.conv``), ``RPNHead`` (sigmoid: one score per anchor)
    and ``Shared2FCBBoxHead`` (``fc_cls`` with background last, ``fc_reg`` 4 per class).
    """
    state = {}
    for name, tensor in recipe_model(num_classes).state_dict().items():
        if name.startswith("backbone."):
            state[name] = torch.randn(tensor.shape)
            if name.endswith("running_var"):
                state[name.replace("running_var", "num_batches_tracked")] = torch.tensor(1000)
    for i, channels in enumerate([256, 512, 1024, 2048]):
        state[f"neck.lateral_convs.{i}.conv.weight"] = torch.randn(256, channels, 1, 1)
        state[f"neck.lateral_convs.{i}.conv.bias"] = torch.randn(256)
        state[f"neck.fpn_convs.{i}.conv.weight"] = torch.randn(256, 256, 3, 3)
        state[f"neck.fpn_convs.{i}.conv.bias"] = torch.randn(256)
    anchors = 3
    state["rpn_head.rpn_conv.weight"] = torch.randn(256, 256, 3, 3)
    state["rpn_head.rpn_conv.bias"] = torch.randn(256)
    state["rpn_head.rpn_cls.weight"] = torch.randn(anchors, 256, 1, 1)
    state["rpn_head.rpn_cls.bias"] = torch.randn(anchors)
    state["rpn_head.rpn_reg.weight"] = torch.randn(anchors * 4, 256, 1, 1)
    state["rpn_head.rpn_reg.bias"] = torch.randn(anchors * 4)
    state["roi_head.bbox_head.shared_fcs.0.weight"] = torch.randn(1024, 256 * 7 * 7)
    state["roi_head.bbox_head.shared_fcs.0.bias"] = torch.randn(1024)
    state["roi_head.bbox_head.shared_fcs.1.weight"] = torch.randn(1024, 1024)
    state["roi_head.bbox_head.shared_fcs.1.bias"] = torch.randn(1024)
    state["roi_head.bbox_head.fc_cls.weight"] = torch.randn(num_classes + 1, 1024)
    state["roi_head.bbox_head.fc_cls.bias"] = torch.randn(num_classes + 1)
    state["roi_head.bbox_head.fc_reg.weight"] = torch.randn(4 * num_classes, 1024)
    state["roi_head.bbox_head.fc_reg.bias"] = torch.randn(4 * num_classes)
    return state


@pytest.fixture(scope="module")
def mmdet_checkpoint(tmp_path_factory):
    """An MMDetection 2.x checkpoint file: ``meta`` with plain types, ``state_dict`` and one unknown key."""
    torch.manual_seed(0)
    state = mmdet_faster_rcnn_r50_fpn()
    state[UNKNOWN_KEY] = torch.randn(1, 1024)
    path = tmp_path_factory.mktemp("mmdet") / "faster_rcnn_r50_fpn_1x_coco.pth"
    meta = {"mmdet_version": "2.28.2", "CLASSES": COCO_CLASSES, "epoch": 12, "iter": 87960, "config": "model = dict()"}
    torch.save({"meta": meta, "state_dict": state}, path)
    return path, state


@pytest.fixture(scope="module")
def converted(mmdet_checkpoint, tmp_path_factory):
    path, state = mmdet_checkpoint
    out = tmp_path_factory.mktemp("converted") / "faster_rcnn.pt"
    result = CliRunner().invoke(cli, ["convert", "mmdet", str(path), "--recipe", RECIPE, "--out", str(out)])
    return result, out, state


def test_convert_writes_a_checkpoint_the_recipe_model_loads_strictly(converted):
    result, out, _ = converted
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(out)
    recipe = tomllib.loads(checkpoint["recipe"])
    assert recipe["model"]["num_classes"] == 80 and checkpoint["classes"] == list(COCO_CLASSES)
    model = build_model(recipe["model"], len(checkpoint["classes"]), for_inference=True)
    model.load_state_dict(checkpoint["model"], strict=True)


def test_convert_places_backbone_neck_and_rpn_weights_under_det_sdk_names(converted):
    _, out, mmdet = converted
    weights = load_checkpoint(out)["model"]
    pairs = {
        "backbone.layer3.5.conv2.weight": "backbone.layer3.5.conv2.weight",
        "backbone.bn1.running_var": "backbone.bn1.running_var",
        "neck.fpn.inner_blocks.2.0.weight": "neck.lateral_convs.2.conv.weight",
        "neck.fpn.layer_blocks.3.0.bias": "neck.fpn_convs.3.conv.bias",
        "rpn.head.conv.0.0.weight": "rpn_head.rpn_conv.weight",
        "rpn.head.cls_logits.weight": "rpn_head.rpn_cls.weight",
        "rpn.head.bbox_pred.bias": "rpn_head.rpn_reg.bias",
        "roi_heads.box_head.fc6.weight": "roi_head.bbox_head.shared_fcs.0.weight",
        "roi_heads.box_head.fc7.bias": "roi_head.bbox_head.shared_fcs.1.bias",
    }
    for name, source in pairs.items():
        assert torch.equal(weights[name], mmdet[source]), name


def test_convert_moves_the_background_class_from_last_to_first(converted):
    _, out, mmdet = converted
    weights = load_checkpoint(out)["model"]
    for param in ("weight", "bias"):
        fc_cls, cls_score = mmdet[f"roi_head.bbox_head.fc_cls.{param}"], weights[f"roi_heads.box_predictor.cls_score.{param}"]
        assert torch.equal(cls_score[0], fc_cls[80])       # background
        assert torch.equal(cls_score[1:], fc_cls[:80])     # class L stays label L (1-based inside the head)
        fc_reg, bbox_pred = mmdet[f"roi_head.bbox_head.fc_reg.{param}"], weights[f"roi_heads.box_predictor.bbox_pred.{param}"]
        assert torch.equal(bbox_pred[4:], fc_reg)
        assert not bbox_pred[:4].any()                     # background deltas: never used


def test_convert_reports_every_unplaced_key_and_no_unfilled_weight(converted):
    result, _, _ = converted
    assert "not placed (1):" in result.output and UNKNOWN_KEY in result.output
    assert "left at their initialisation (0)" in result.output
    assert "background moved from the last row" in result.output
    assert "num_batches_tracked" not in result.output  # BatchNorm counters are not weights


def test_convert_strict_refuses_unplaced_keys_and_writes_nothing(mmdet_checkpoint, tmp_path):
    path, _ = mmdet_checkpoint
    out = tmp_path / "strict.pt"
    result = CliRunner().invoke(cli, ["convert", "mmdet", str(path), "--recipe", RECIPE, "--out", str(out), "--strict"])
    assert result.exit_code == 2 and UNKNOWN_KEY in result.output and "nothing written" in result.output
    assert not out.exists()


def test_convert_with_another_num_classes_reports_the_class_layers_unfilled(mmdet_checkpoint, tmp_path):
    path, _ = mmdet_checkpoint
    args = ["convert", "mmdet", str(path), "--recipe", RECIPE, "--out", str(tmp_path / "c.pt"), "--set", "model.num_classes=8"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "left at their initialisation (4):" in result.output
    assert "roi_head.bbox_head.fc_cls.weight (as roi_heads.box_predictor.cls_score.weight: (81, 1024) after conversion" in result.output


def test_a_checkpoint_that_would_run_code_is_refused_without_fallback(tmp_path):
    path = tmp_path / "unsafe.pth"
    torch.save({"meta": {"hook": _NotPlainData()}, "state_dict": {"neck.lateral_convs.0.conv.weight": torch.zeros(1)}}, path)
    result = CliRunner().invoke(cli, ["convert", "mmdet", str(path), "--recipe", RECIPE, "--out", str(tmp_path / "o.pt")])
    assert result.exit_code == 2 and "refused" in result.output
    assert not (tmp_path / "o.pt").exists()


def test_a_checkpoint_of_another_layout_is_a_one_line_error(tmp_path):
    path = tmp_path / "detsdk.pt"
    torch.save({"model": {"backbone.conv1.weight": torch.zeros(1)}}, path)
    result = CliRunner().invoke(cli, ["convert", "mmdet", str(path), "--recipe", RECIPE, "--out", str(tmp_path / "o.pt")])
    assert result.exit_code == 2 and "not an MMDetection checkpoint" in result.output


class _NotPlainData:
    """An object ``torch.load(weights_only=True)`` must refuse to build."""


def test_convert_mask_rcnn_fills_the_mask_branch_with_a_background_channel_first(tmp_path):
    state = mmdet_faster_rcnn_r50_fpn()
    for i in range(4):  # MMDetection's FCNMaskHead: 4 ConvModules, a deconv, per-class logits (no background)
        state[f"roi_head.mask_head.convs.{i}.conv.weight"] = torch.randn(256, 256, 3, 3)
        state[f"roi_head.mask_head.convs.{i}.conv.bias"] = torch.randn(256)
    state["roi_head.mask_head.upsample.weight"] = torch.randn(256, 256, 2, 2)
    state["roi_head.mask_head.upsample.bias"] = torch.randn(256)
    state["roi_head.mask_head.conv_logits.weight"] = torch.randn(80, 256, 1, 1)
    state["roi_head.mask_head.conv_logits.bias"] = torch.randn(80)
    path, out = tmp_path / "mask_rcnn.pth", tmp_path / "mask_rcnn.pt"
    torch.save({"meta": {"CLASSES": COCO_CLASSES}, "state_dict": state}, path)
    args = ["convert", "mmdet", str(path), "--recipe", "detsdk:mask_rcnn_r50_fpn_1x_coco.toml", "--out", str(out), "--strict"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    weights = load_checkpoint(out)["model"]
    assert torch.equal(weights["roi_heads.mask_head.2.0.weight"], state["roi_head.mask_head.convs.2.conv.weight"])
    assert torch.equal(weights["roi_heads.mask_predictor.conv5_mask.bias"], state["roi_head.mask_head.upsample.bias"])
    logits = weights["roi_heads.mask_predictor.mask_fcn_logits.weight"]
    assert not logits[0].any() and torch.equal(logits[1:], state["roi_head.mask_head.conv_logits.weight"])
