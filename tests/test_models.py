"""Built-in models: ResNet, FPN, RPN and box heads, Faster R-CNN (tiny settings, CPU)."""

from __future__ import annotations

import os

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import ResNet18_Weights
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import FrozenBatchNorm2d

from detsdk.builtin.models import FPN, FasterRCNN, ResNet, RPNHead, Shared2FCBoxHead, build_faster_rcnn
from detsdk.errors import CheckpointError, DataError, RecipeError
from detsdk.plugins.build import build_component

SIZE = 64


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def tiny_detector(num_classes: int = 3, neck: bool = True, rpn_head: dict | None = None, **box_head) -> FasterRCNN:
    backbone = ResNet(depth=18, frozen_stages=1)
    fpn = FPN(backbone.out_channels, out_channels=32) if neck else None
    return build_faster_rcnn(
        backbone,
        fpn,
        num_classes=num_classes,
        rpn_head=rpn_head or {"type": "rpn_head"},
        box_head={"type": "shared2fc_box_head", "fc_channels": 64, **box_head},
    )


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE)


def target(boxes, labels, iscrowd=None) -> dict[str, torch.Tensor]:
    result = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }
    if iscrowd is not None:
        result["iscrowd"] = torch.tensor(iscrowd, dtype=torch.bool)
    return result


def two_targets() -> list[dict[str, torch.Tensor]]:
    return [target([[4, 6, 40, 44], [30, 20, 60, 58]], [0, 2]), target([[10, 10, 50, 30]], [1])]


LOSS_NAMES = {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"}


# -- Faster R-CNN ------------------------------------------------------------
def test_training_forward_returns_the_four_finite_losses():
    model = tiny_detector().train()
    losses = model(images(), two_targets())
    assert set(losses) == LOSS_NAMES
    assert all(loss.dim() == 0 and torch.isfinite(loss) for loss in losses.values())


def test_backward_gives_gradients_to_trainable_parameters():
    model = tiny_detector().train()
    sum(model(images(), two_targets()).values()).backward()
    for name in ("backbone.layer2.0.conv1.weight", "neck.fpn.inner_blocks.0.0.weight", "rpn.head.cls_logits.weight",
                 "roi_heads.box_head.fc6.weight", "roi_heads.box_predictor.cls_score.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_eval_returns_per_image_detections_with_0_based_labels_inside_image_sizes():
    model = tiny_detector(num_classes=3, score_thresh=0.0).eval()
    sizes = [(64, 48), (40, 64)]
    with torch.no_grad():
        detections = model(images(), image_sizes=sizes)
    assert len(detections) == 2
    for detection, (h, w) in zip(detections, sizes):
        assert set(detection) == {"boxes", "scores", "labels"}
        assert len(detection["boxes"]) > 0
        assert detection["labels"].dtype == torch.int64
        assert detection["labels"].min() >= 0 and detection["labels"].max() < 3
        boxes = detection["boxes"]
        assert boxes.min() >= 0 and (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all()


def test_training_works_on_images_without_boxes():
    model = tiny_detector().train()
    losses = model(images(), [target([], []), target([], [])])
    assert all(torch.isfinite(loss) for loss in losses.values())
    assert losses["loss_rpn_bbox"] == 0 and losses["loss_bbox"] == 0


def test_crowd_boxes_are_never_training_positives():
    model = tiny_detector().train()
    losses = model(images(1), [target([[0, 0, 64, 64]], [1], iscrowd=[True])])
    assert all(torch.isfinite(loss) for loss in losses.values())
    assert losses["loss_rpn_bbox"] == 0 and losses["loss_bbox"] == 0


def test_labels_outside_num_classes_are_a_data_error():
    model = tiny_detector(num_classes=3).train()
    with pytest.raises(DataError, match="num_classes=3"):
        model(images(1), [target([[4, 4, 30, 30]], [3])])


@pytest.mark.parametrize("loss_bbox", ["smooth_l1", "l1", "giou"])
def test_each_box_loss_trains_one_step(loss_bbox):
    model = tiny_detector(loss_bbox=loss_bbox).train()
    predictor = model.roi_heads.box_predictor.bbox_pred.weight
    before = predictor.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    losses = model(images(), two_targets())
    assert torch.isfinite(losses["loss_bbox"]) and losses["loss_bbox"] > 0
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(before, predictor)


def test_unknown_box_loss_is_a_recipe_error_naming_the_choices():
    with pytest.raises(RecipeError, match="did you mean 'giou'.*valid: smooth_l1, l1, giou"):
        Shared2FCBoxHead(in_channels=32, num_classes=3, loss_bbox="gious")


def test_unknown_class_loss_is_a_recipe_error_naming_the_choices():
    with pytest.raises(RecipeError, match="valid: cross_entropy"):
        Shared2FCBoxHead(in_channels=32, num_classes=3, loss_cls="focal")


def test_num_classes_changes_only_the_predictor_shapes():
    three = {k: v.shape for k, v in tiny_detector(num_classes=3).state_dict().items()}
    five = {k: v.shape for k, v in tiny_detector(num_classes=5).state_dict().items()}
    assert three.keys() == five.keys()
    changed = {k for k in three if three[k] != five[k]}
    assert changed == {f"roi_heads.box_predictor.{layer}.{p}" for layer in ("cls_score", "bbox_pred")
                       for p in ("weight", "bias")}
    assert five["roi_heads.box_predictor.cls_score.weight"][0] == 6  # 5 classes + background


def test_submodules_are_named_for_a_torchvision_key_rename():
    model = tiny_detector()
    assert [name for name, _ in model.named_children()] == ["backbone", "neck", "rpn", "roi_heads"]
    assert model.num_classes == 3


def test_detector_without_neck_uses_the_last_backbone_map():
    model = tiny_detector(neck=False, rpn_head={"type": "rpn_head", "anchor_sizes": [[32, 64]]}).train()
    losses = model(images(1), two_targets()[:1])
    assert set(losses) == LOSS_NAMES and all(torch.isfinite(v) for v in losses.values())


def test_anchor_levels_that_do_not_match_the_features_are_a_recipe_error():
    model = tiny_detector(neck=False).eval()
    with pytest.raises(RecipeError, match="anchor_sizes has 5 levels but the detector gives 1"):
        model(images(1))


def test_registered_factories_build_through_the_registry():
    backbone = build_component("backbone", {"type": "resnet", "depth": 18})
    neck = build_component("neck", {"type": "fpn", "out_channels": 32}, in_channels=backbone.out_channels)
    model = build_component("detector", {"type": "faster_rcnn"}, backbone=backbone, neck=neck, num_classes=2)
    assert isinstance(model, FasterRCNN) and isinstance(model.rpn, RPNHead)


def test_num_classes_must_be_a_positive_integer():
    with pytest.raises(RecipeError, match="num_classes"):
        build_faster_rcnn(ResNet(depth=18), None, num_classes=0)


# -- crowd regions in the heads ---------------------------------------------
def test_background_anchors_inside_a_crowd_region_are_ignored():
    rpn = RPNHead(in_channels=8, anchor_sizes=[[16]], aspect_ratios=[1.0])
    anchors = [torch.tensor([[0.0, 0, 16, 16], [40, 40, 56, 56], [100, 100, 116, 116]])]
    targets = [{"boxes": torch.tensor([[0.0, 0, 16, 16]]), "crowd_boxes": torch.tensor([[32.0, 32, 64, 64]])}]
    labels, _ = rpn.assign_targets_to_anchors(anchors, targets)
    assert labels[0].tolist() == [1.0, -1.0, 0.0]


def test_background_proposals_inside_a_crowd_region_are_not_sampled():
    head = Shared2FCBoxHead(in_channels=8, num_classes=2, fc_channels=16)
    proposals = [torch.tensor([[34.0, 34, 60, 60], [0, 40, 20, 60]])]
    targets = [{
        "boxes": torch.tensor([[0.0, 0, 20, 20]]),
        "labels": torch.tensor([1]),
        "crowd_boxes": torch.tensor([[32.0, 32, 64, 64]]),
    }]
    sampled, labels, _, _ = head.sample_proposals(proposals, targets)
    assert torch.equal(sampled[0][labels[0] == 0], torch.tensor([[0.0, 40, 20, 60]]))
    assert (labels[0] == 1).sum() == 1  # the ground truth itself


# -- ResNet -----------------------------------------------------------------
def test_resnet_returns_c2_to_c5_fine_to_coarse():
    backbone = ResNet(depth=18)
    features = backbone(torch.randn(1, 3, SIZE, SIZE))
    assert list(features) == ["c2", "c3", "c4", "c5"]
    assert [f.shape[1] for f in features.values()] == backbone.out_channels == [64, 128, 256, 512]
    assert [SIZE // f.shape[-1] for f in features.values()] == backbone.strides == [4, 8, 16, 32]


def test_resnet_out_indices_select_stages_and_skip_unused_layers():
    backbone = ResNet(depth=50, out_indices=[1, 2])
    assert backbone.out_channels == [512, 1024] and backbone.strides == [8, 16]
    assert not hasattr(backbone, "layer4")
    assert list(backbone(torch.randn(1, 3, SIZE, SIZE))) == ["c3", "c4"]


def test_unsupported_depth_is_a_recipe_error_naming_valid_depths():
    with pytest.raises(RecipeError, match="unsupported depth 42; valid: 18, 34, 50, 101"):
        ResNet(depth=42)


def test_unknown_norm_is_a_recipe_error_naming_the_choices():
    with pytest.raises(RecipeError, match="did you mean 'gn'.*valid: bn, frozen_bn, gn"):
        ResNet(depth=18, norm="gnn")


@pytest.mark.parametrize(
    ("norm", "layer"), [("bn", nn.BatchNorm2d), ("frozen_bn", FrozenBatchNorm2d), ("gn", nn.GroupNorm)]
)
def test_norm_option_selects_the_normalization_layer(norm, layer):
    backbone = ResNet(depth=18, norm=norm, frozen_stages=-1).train()
    assert type(backbone.bn1) is layer and type(backbone.layer4[1].bn2) is layer
    assert backbone(torch.randn(2, 3, SIZE, SIZE))["c5"].shape == (2, 512, 2, 2)


@pytest.mark.parametrize("frozen_stages", [-1, 0, 1, 3])
def test_frozen_stages_freeze_the_stem_and_first_layers(frozen_stages):
    backbone = ResNet(depth=18, norm="bn", frozen_stages=frozen_stages)
    frozen = {"conv1", "bn1"} if frozen_stages >= 0 else set()
    frozen |= {f"layer{i}" for i in range(1, frozen_stages + 1)}
    for name, param in backbone.named_parameters():
        assert param.requires_grad == (name.split(".")[0] not in frozen), name


def test_frozen_stages_keep_their_norm_in_eval_mode_when_training():
    backbone = ResNet(depth=18, norm="bn", frozen_stages=1).train()
    assert not backbone.bn1.training and not backbone.layer1[0].bn1.training
    assert backbone.layer2[0].bn1.training


def _random_torchvision_resnet18_state_dict() -> dict[str, torch.Tensor]:
    state = torchvision.models.resnet18().state_dict()
    return {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}


def _assert_backbone_holds(backbone: ResNet, state: dict[str, torch.Tensor]) -> None:
    own = backbone.state_dict()
    for key, value in state.items():
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked"):
            assert torch.equal(own[key], value), key


def test_pretrained_local_file_loads_a_nested_torchvision_state_dict(tmp_path):
    state = _random_torchvision_resnet18_state_dict()
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 1}}, path)
    _assert_backbone_holds(ResNet(depth=18, pretrained=str(path)), state)


def test_pretrained_weights_name_loads_through_torchvision_weights_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    state = _random_torchvision_resnet18_state_dict()
    torch.save(state, checkpoints / os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url))
    _assert_backbone_holds(ResNet(depth=18, pretrained="IMAGENET1K_V1"), state)


def test_unknown_pretrained_name_is_a_recipe_error_listing_the_weights():
    with pytest.raises(RecipeError, match="valid: IMAGENET1K_V1, DEFAULT"):
        ResNet(depth=18, pretrained="IMAGENET")


def test_pretrained_file_of_another_depth_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_random_torchvision_resnet18_state_dict(), path)
    with pytest.raises(CheckpointError, match="does not fit"):
        ResNet(depth=50, pretrained=str(path))


# -- FPN ----------------------------------------------------------------------
def test_fpn_outputs_p2_to_p6_with_out_channels():
    neck = FPN([64, 128, 256, 512], out_channels=32)
    features = ResNet(depth=18)(torch.randn(1, 3, SIZE, SIZE))
    outputs = neck(features)
    assert list(outputs) == ["p2", "p3", "p4", "p5", "p6"]
    assert all(o.shape[1] == neck.out_channels == 32 for o in outputs.values())
    assert [SIZE // o.shape[-1] for o in outputs.values()] == neck.strides == [4, 8, 16, 32, 64]


def test_fpn_rejects_an_unsupported_num_outs():
    with pytest.raises(RecipeError, match="num_outs must be 4 or 5"):
        FPN([64, 128, 256, 512], num_outs=6)


def test_rpn_head_ignores_num_classes_and_returns_named_losses():
    rpn = RPNHead(in_channels=8, num_classes=80, anchor_sizes=[[16]]).train()
    features = {"p": torch.randn(1, 8, 8, 8)}
    image_list = ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)])
    _, losses = rpn(image_list, features, [{"boxes": torch.tensor([[4.0, 4, 20, 20]])}])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox"}
