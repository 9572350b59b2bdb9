"""torchvision detection weights through ``runtime.load_from``: det-sdk gives torchvision's detections.

Each torchvision model is built with random weights, saved as a plain state dict, loaded into
the det-sdk model of the matching shipped recipe by ``load_weights_from`` (what
``runtime.load_from`` runs), and both detect on the same input. Image sizes and
``min_size``/``max_size`` make torchvision's resize a no-op (scale 1.0), so det-sdk gets the
very tensor torchvision's transform produces (normalized, zero-padded to a multiple of 32).

Labels: torchvision's Faster/Mask R-CNN count background as class 0 (91 classes): det-sdk has
90 and its label ``L`` is torchvision's ``L + 1``. RetinaNet and FCOS have 91 classes and no
background: labels are equal.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torchvision.models import detection
from torchvision.ops import FrozenBatchNorm2d

from detsdk.engine.build import build_model
from detsdk.engine.load_from import load_weights_from
from detsdk.engine.interop import MMDETECTION, TORCHVISION, checkpoint_format, from_mmdet
from detsdk.errors import DetSDKWarning
from detsdk.recipe import load_recipe, with_defaults

IMAGE_SHAPES = [(3, 256, 192), (3, 192, 224)]  # short side 192, long side <= 256: scale 1.0 for both
TOLERANCE = 1e-4

TWO_STAGE = {"box_score_thresh": 0.0, "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 50,
             "box_detections_per_img": 20}
TWO_STAGE_RECIPE = {"rpn_head": {"pre_nms_top_n_test": 200, "post_nms_top_n_test": 50},
                    "box_head": {"score_thresh": 0.0, "detections_per_img": 20}}
ONE_STAGE = {"score_thresh": 0.0, "detections_per_img": 20}
ONE_STAGE_RECIPE = {"head": {"score_thresh": 0.0, "detections_per_img": 20}}

# torchvision builder -> (shipped recipe, det-sdk num_classes, torchvision label - det-sdk label,
#                         torchvision keyword arguments, recipe overrides)
CASES: dict[str, tuple[str, int, int, dict, dict]] = {
    "fasterrcnn_resnet50_fpn": ("faster_rcnn_r50_fpn_1x_coco.toml", 90, 1, TWO_STAGE, TWO_STAGE_RECIPE),
    "fasterrcnn_resnet50_fpn_v2": ("faster_rcnn_r50_fpn_v2_1x_coco.toml", 90, 1, TWO_STAGE, TWO_STAGE_RECIPE),
    "maskrcnn_resnet50_fpn": (
        "mask_rcnn_r50_fpn_1x_coco.toml", 90, 1, {**TWO_STAGE, "box_detections_per_img": 10},
        {**TWO_STAGE_RECIPE, "box_head": {"score_thresh": 0.0, "detections_per_img": 10}},
    ),
    # torchvision makes P6 from P5 where MMDetection's RetinaNet (the shipped recipe) uses C5.
    "retinanet_resnet50_fpn": (
        "retinanet_r50_fpn_1x_coco.toml", 91, 0, ONE_STAGE, {**ONE_STAGE_RECIPE, "neck": {"extra": "p6p7_on_p5"}},
    ),
    "fcos_resnet50_fpn": ("fcos_r50_fpn_1x_coco.toml", 91, 0, ONE_STAGE, ONE_STAGE_RECIPE),
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def torchvision_model(builder: str, **kwargs) -> nn.Module:
    """A torchvision detector with random weights and BatchNorm statistics, as pretrained ones run.

    torchvision builds its pretrained backbones with ``FrozenBatchNorm2d`` (det-sdk's
    ``frozen_bn``), random ones with ``BatchNorm2d``: the same function in eval mode, rounded
    differently, and random weights amplify rounding; so the backbone's are swapped here.
    """
    model = getattr(detection, builder)(weights=None, weights_backbone=None, min_size=192, max_size=256, **kwargs)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    _freeze_batch_norm(model.backbone.body)
    return model.eval()


def _freeze_batch_norm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batch_norm(child)


def recipe_model(recipe: str, num_classes: int, overrides: dict[str, Any]) -> nn.Module:
    """The det-sdk model of a shipped recipe (``detsdk:<recipe>``) with ``[model]`` overrides."""
    config = with_defaults(load_recipe({"base": [f"detsdk:{recipe}"], "model": overrides}).data)
    return build_model(config["model"], num_classes, for_inference=True)


def detections_of_both(builder: str, tmp_path) -> tuple[list[dict], list[dict], int]:
    """torchvision's detections and det-sdk's after ``load_from`` of its state dict, on the same input."""
    recipe, num_classes, label_shift, tv_kwargs, overrides = CASES[builder]
    reference = torchvision_model(builder, **tv_kwargs)
    path = tmp_path / f"{builder}.pth"
    torch.save(reference.state_dict(), path)
    model = recipe_model(recipe, num_classes, overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DetSDKWarning)  # every weight placed, none skipped or re-initialised
        load_weights_from(model, path)
    model.eval()
    images = [torch.rand(shape) for shape in IMAGE_SHAPES]
    with torch.no_grad():
        expected = reference(images)
        batch, _ = reference.transform(images)
        assert batch.image_sizes == [shape[1:] for shape in IMAGE_SHAPES]  # no resize happened
        got = model(batch.tensors, image_sizes=batch.image_sizes)
    return expected, got, label_shift


def max_differences(expected: list[dict], got: list[dict], label_shift: int) -> dict[str, float]:
    """Largest absolute difference per output over all images (labels: count of disagreements)."""
    differences = {"boxes": 0.0, "scores": 0.0, "labels": 0.0}
    for reference, ours in zip(expected, got):
        assert len(reference["boxes"]) > 0 and len(ours["boxes"]) == len(reference["boxes"])
        differences["boxes"] = max(differences["boxes"], (reference["boxes"] - ours["boxes"]).abs().max().item())
        differences["scores"] = max(differences["scores"], (reference["scores"] - ours["scores"]).abs().max().item())
        differences["labels"] += int((reference["labels"] != ours["labels"] + label_shift).sum())
        if "masks" in reference:
            difference = (reference["masks"] - ours["masks"]).abs().max().item()
            differences["masks"] = max(differences.get("masks", 0.0), difference)
    return differences


@pytest.mark.parametrize("builder", list(CASES))
def test_torchvision_weights_give_torchvision_detections(builder, tmp_path):
    differences = max_differences(*detections_of_both(builder, tmp_path))
    assert differences["labels"] == 0
    assert max(differences.values()) <= TOLERANCE, differences
    if builder.startswith("maskrcnn"):
        assert "masks" in differences


def test_torchvision_and_mmdetection_layouts_are_recognised_by_their_keys():
    assert checkpoint_format({"backbone.body.conv1.weight": 0, "rpn.head.conv.0.0.weight": 0}) == TORCHVISION
    assert checkpoint_format({"backbone.conv1.weight": 0, "neck.lateral_convs.0.conv.weight": 0}) == MMDETECTION
    assert checkpoint_format({"backbone.conv1.weight": 0, "neck.fpn.inner_blocks.0.0.weight": 0}) == "det-sdk"


# -- fine-tuning: another num_classes -----------------------------------------------------
def small_torchvision_faster_rcnn() -> nn.Module:
    """torchvision's Faster R-CNN on a ResNet-18 FPN (COCO's 91 classes), random weights: small and quick."""
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=3)
    return detection.FasterRCNN(backbone, num_classes=91)


def small_recipe_model(num_classes: int) -> nn.Module:
    return recipe_model(
        "faster_rcnn_r50_fpn_1x_coco.toml", num_classes, {"backbone": {"depth": 18}, "neck": {"out_channels": 256}}
    )


def test_another_num_classes_re_initialises_exactly_the_class_dependent_layers(tmp_path):
    source = small_torchvision_faster_rcnn()
    path = tmp_path / "coco.pth"
    torch.save(source.state_dict(), path)
    model = small_recipe_model(num_classes=3)
    fresh = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.warns(DetSDKWarning) as caught:
        reinitialised = load_weights_from(model, path)
    message = "\n".join(str(w.message) for w in caught)
    assert sorted(reinitialised) == [f"roi_heads.box_predictor.{layer}.{p}" for layer in ("bbox_pred", "cls_score")
                                     for p in ("bias", "weight")]
    assert (
        "re-initialised 4 weights with a shape mismatch: roi_heads.box_predictor.cls_score "
        "(weight (91, 1024) -> (4, 1024), bias (91,) -> (4,)), roi_heads.box_predictor.bbox_pred "
        "(weight (364, 1024) -> (16, 1024), bias (364,) -> (16,)); 2 layers keep their fresh initialisation"
    ) in message
    assert len(caught) == 1  # nothing else missing or skipped
    loaded, original = model.state_dict(), source.state_dict()
    for name, tensor in loaded.items():
        if name in reinitialised:
            assert torch.equal(tensor, fresh[name]), name
        else:
            key = name.replace("neck.fpn.", "backbone.fpn.") if name.startswith("neck.") else (
                name.replace("backbone.", "backbone.body.", 1) if name.startswith("backbone.") else name)
            assert torch.equal(tensor, original[key]), name


def test_a_layer_is_re_initialised_whole_when_one_of_its_tensors_does_not_fit(tmp_path):
    model = small_recipe_model(num_classes=3)
    weights = {name: tensor.clone() + 1 for name, tensor in model.state_dict().items()}
    weights["neck.fpn.inner_blocks.0.0.weight"] = torch.zeros(256, 32, 1, 1)  # another in_channels; bias fits
    before = model.state_dict()["neck.fpn.inner_blocks.0.0.bias"].clone()
    path = tmp_path / "other.pt"
    torch.save({"model": weights}, path)
    with pytest.warns(DetSDKWarning, match=r"re-initialised 2 weights .*: neck\.fpn\.inner_blocks\.0\.0 \(weight"):
        load_weights_from(model, path)
    assert torch.equal(model.state_dict()["neck.fpn.inner_blocks.0.0.bias"], before)


# -- MMDetection 2.x key mapping of the heads beyond Faster R-CNN -------------------------
def test_mmdetection_mask_head_maps_to_the_mask_branch_with_a_background_channel_first():
    weights = {
        "roi_head.bbox_head.fc_cls.weight": torch.randn(4, 8),
        "roi_head.mask_head.convs.3.conv.weight": torch.randn(16, 16, 3, 3),
        "roi_head.mask_head.upsample.weight": torch.randn(16, 16, 2, 2),
        "roi_head.mask_head.conv_logits.weight": torch.randn(3, 16, 1, 1),
        "roi_head.mask_head.conv_logits.bias": torch.randn(3),
    }
    converted = from_mmdet(weights).weights
    assert torch.equal(converted["roi_heads.mask_head.3.0.weight"], weights["roi_head.mask_head.convs.3.conv.weight"])
    assert torch.equal(converted["roi_heads.mask_predictor.conv5_mask.weight"], weights["roi_head.mask_head.upsample.weight"])
    logits = converted["roi_heads.mask_predictor.mask_fcn_logits.weight"]
    assert logits.shape[0] == 4 and not logits[0].any()
    assert torch.equal(logits[1:], weights["roi_head.mask_head.conv_logits.weight"])


def test_mmdetection_retinanet_maps_towers_predictors_and_extra_levels():
    weights = {
        "neck.lateral_convs.2.conv.weight": torch.randn(8, 32, 1, 1),
        "neck.fpn_convs.3.conv.weight": torch.randn(8, 32, 3, 3),
        "neck.fpn_convs.4.conv.bias": torch.randn(8),
        "bbox_head.cls_convs.1.conv.weight": torch.randn(8, 8, 3, 3),
        "bbox_head.reg_convs.0.conv.bias": torch.randn(8),
        "bbox_head.retina_cls.weight": torch.randn(9 * 80, 8, 3, 3),
        "bbox_head.retina_reg.weight": torch.randn(9 * 4, 8, 3, 3),
    }
    conversion = from_mmdet(weights)
    assert conversion.unplaced == []
    assert set(conversion.weights) == {
        "neck.fpn.inner_blocks.2.0.weight", "neck.fpn.extra_blocks.p6.weight", "neck.fpn.extra_blocks.p7.bias",
        "head.classification_head.conv.1.0.weight", "head.regression_head.conv.0.0.bias",
        "head.classification_head.cls_logits.weight", "head.regression_head.bbox_reg.weight",
    }


def test_mmdetection_convfc_box_head_maps_convs_norms_and_the_fc_after_them():
    weights = {
        "roi_head.bbox_head.shared_convs.0.conv.weight": torch.randn(8, 8, 3, 3),
        "roi_head.bbox_head.shared_convs.3.gn.weight": torch.randn(8),
        "roi_head.bbox_head.shared_fcs.0.weight": torch.randn(16, 8 * 49),
    }
    assert set(from_mmdet(weights).weights) == {
        "roi_heads.box_head.0.0.weight", "roi_heads.box_head.3.1.weight", "roi_heads.box_head.5.weight",
    }


# -- components torchvision's v2 needs --------------------------------------------------------
@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
def test_convfc_box_head_trains_and_detects_with_each_norm(norm):
    from detsdk.builtin.models import FPN, ResNet, build_faster_rcnn

    backbone = ResNet(depth=18, frozen_stages=1)
    model = build_faster_rcnn(
        backbone, FPN(backbone.out_channels, out_channels=32), num_classes=3,
        rpn_head={"type": "rpn_head", "num_convs": 2, "post_nms_top_n_train": 64},
        box_head={"type": "convfc_box_head", "conv_channels": 32, "fc_channels": 64, "norm": norm,
                  "batch_size_per_image": 32},
    )
    assert [type(m).__name__ for m in model.roi_heads.box_head][-3:] == ["Flatten", "Linear", "ReLU"]
    target = {"boxes": torch.tensor([[4.0, 6.0, 40.0, 44.0]]), "labels": torch.tensor([1])}
    losses = model.train()(torch.randn(2, 3, 64, 64), [target, target])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    with torch.no_grad():
        detections = model.eval()(torch.randn(1, 3, 64, 64))
    assert set(detections[0]) == {"boxes", "scores", "labels"}


def test_convfc_box_head_errors_name_itself():
    from detsdk.builtin.models.box_head import ConvFCBoxHead
    from detsdk.errors import RecipeError

    with pytest.raises(RecipeError, match=r"head convfc_box_head: unknown norm 'bm' \(did you mean 'bn'\?\)"):
        ConvFCBoxHead(in_channels=32, num_classes=3, norm="bm")
    with pytest.raises(RecipeError, match=r"head convfc_box_head: unknown loss_bbox 'l2'"):
        ConvFCBoxHead(in_channels=32, num_classes=3, loss_bbox="l2")


@pytest.mark.parametrize(("norm", "layer"), [("bn", nn.BatchNorm2d), ("gn", nn.GroupNorm)])
def test_fpn_norm_follows_each_lateral_and_output_conv_which_lose_their_bias(norm, layer):
    from detsdk.builtin.models import FPN

    neck = FPN([64, 128], out_channels=32, num_outs=3, norm=norm)
    for block in (*neck.fpn.inner_blocks, *neck.fpn.layer_blocks):
        assert block[0].bias is None and isinstance(block[1], layer)
    outputs = neck.eval()({"c4": torch.randn(1, 64, 16, 16), "c5": torch.randn(1, 128, 8, 8)})
    assert [tuple(o.shape[1:]) for o in outputs.values()] == [(32, 16, 16), (32, 8, 8), (32, 4, 4)]


def test_fpn_unknown_norm_is_a_recipe_error_naming_the_choices():
    from detsdk.builtin.models import FPN
    from detsdk.errors import RecipeError

    with pytest.raises(RecipeError, match=r"neck fpn: unknown norm 'batchnorm'.*valid: none, bn, gn"):
        FPN([64, 128], norm="batchnorm")


def test_evaluate_takes_a_torchvision_state_dict_as_checkpoint_and_scores_as_the_original(tmp_path):
    from conftest import tiny_recipe

    from detsdk import Engine
    from detsdk.engine.checkpoint import load_checkpoint

    recipe = tiny_recipe(tmp_path / "run", train={"iters": 2, "optimizer": {"type": "sgd", "lr": 0.01}},
                         runtime={"work_dir": str(tmp_path / "run"), "plot_samples": 0})
    recipe["model"]["box_head"]["score_thresh"] = 0.0
    Engine.from_recipe(recipe).fit()
    own = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    # The same weights under torchvision's names: its backbone is backbone.body, its FPN backbone.fpn.
    renamed = {("backbone.body." + k[len("backbone."):]) if k.startswith("backbone.") else
               ("backbone.fpn." + k[len("neck.fpn."):]) if k.startswith("neck.fpn.") else k: v for k, v in own.items()}
    assert not any(k.startswith("neck.") for k in renamed)
    torch.save(renamed, tmp_path / "torchvision.pth")

    expected = Engine.from_recipe(recipe).evaluate(checkpoint=tmp_path / "run" / "last.pt")
    got = Engine.from_recipe(recipe).evaluate(checkpoint=tmp_path / "torchvision.pth")
    assert got == expected and expected["bbox_mAP_50"] >= 0.0
