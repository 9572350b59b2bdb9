"""One-stage detectors: RetinaNet and FCOS, their heads, and the FPN's P6/P7 (tiny settings, CPU)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_recipe
from torchvision.models.detection import FCOS as TorchvisionFCOS
from torchvision.models.detection import RetinaNet as TorchvisionRetinaNet
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from detsdk import Engine
from detsdk.builtin.models.fcos import FCOS, build_fcos
from detsdk.builtin.models.fcos_head import FCOSHead
from detsdk.builtin.models.fpn import FPN
from detsdk.builtin.models.resnet import ResNet
from detsdk.builtin.models.retina_head import RetinaHead
from detsdk.builtin.models.retinanet import RetinaNet, build_retinanet
from detsdk.errors import DataError, RecipeError
from detsdk.plugins.build import build_component

SIZE = 64
P3_P7 = {"start_level": 1, "extra": "p6p7"}
HEADS = {
    "retinanet": {"type": "retina_head", "anchor_sizes": [[16], [32], [64], [128], [256]]},
    "fcos": {"type": "fcos_head"},
}
BUILDERS = {"retinanet": build_retinanet, "fcos": build_fcos}
LOSS_NAMES = {"retinanet": {"loss_cls", "loss_bbox"}, "fcos": {"loss_cls", "loss_bbox", "loss_centerness"}}
DETECTORS = list(HEADS)


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def tiny_detector(detector: str, num_classes: int = 3, **head) -> RetinaNet | FCOS:
    backbone = ResNet(depth=18, frozen_stages=1)
    neck = FPN(backbone.out_channels, out_channels=32, **P3_P7)
    return BUILDERS[detector](backbone, neck, num_classes=num_classes, head={**HEADS[detector], **head})


def images(batch: int = 2, size: int = SIZE) -> torch.Tensor:
    return torch.randn(batch, 3, size, size)


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


# -- both detectors -----------------------------------------------------------
@pytest.mark.parametrize("detector", DETECTORS)
def test_training_forward_returns_finite_scalar_losses(detector):
    losses = tiny_detector(detector).train()(images(), two_targets())
    assert set(losses) == LOSS_NAMES[detector]
    assert all(loss.dim() == 0 and torch.isfinite(loss) and loss > 0 for loss in losses.values())


@pytest.mark.parametrize("detector", DETECTORS)
def test_backward_gives_gradients_to_backbone_neck_and_both_head_branches(detector):
    model = tiny_detector(detector).train()
    # 128 px: at 64 px P6 and P7 are 1x1, where FCOS's GroupNorm (one channel a group) outputs zeros.
    sum(model(images(size=2 * SIZE), two_targets()).values()).backward()
    first_conv = "conv.0" if detector == "fcos" else "conv.0.0"  # torchvision's layouts differ
    names = ["backbone.layer2.0.conv1.weight", "neck.fpn.inner_blocks.0.0.weight", "neck.fpn.extra_blocks.p6.weight",
             f"head.classification_head.{first_conv}.weight", "head.classification_head.cls_logits.weight",
             "head.regression_head.bbox_reg.weight"]
    if detector == "fcos":
        names.append("head.regression_head.bbox_ctrness.weight")
    for name in names:
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("detector", DETECTORS)
def test_training_works_on_images_without_boxes(detector):
    losses = tiny_detector(detector).train()(images(), [target([], []), target([], [])])
    assert all(torch.isfinite(loss) for loss in losses.values())
    assert losses["loss_cls"] > 0
    assert all(losses[name] == 0 for name in LOSS_NAMES[detector] - {"loss_cls"})


@pytest.mark.parametrize("detector", DETECTORS)
def test_eval_returns_per_image_detections_with_0_based_labels_inside_image_sizes(detector):
    model = tiny_detector(detector, num_classes=3, score_thresh=0.0).eval()
    sizes = [(64, 48), (40, 64)]
    with torch.no_grad():
        detections = model(images(), image_sizes=sizes)
    assert len(detections) == 2
    for detection, (h, w) in zip(detections, sizes):
        assert set(detection) == {"boxes", "scores", "labels"}
        assert 0 < len(detection["boxes"]) <= 100
        assert detection["labels"].dtype == torch.int64
        assert detection["labels"].min() >= 0 and detection["labels"].max() < 3
        assert set(detection["labels"].tolist()) == {0, 1, 2}  # no background channel to skip
        boxes = detection["boxes"]
        assert boxes.min() >= 0 and (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all()


@pytest.mark.parametrize("detector", DETECTORS)
def test_crowd_boxes_are_never_training_positives(detector):
    crowd = target([[0, 0, 64, 64]], [1], iscrowd=[True])
    losses = tiny_detector(detector).train()(images(), [crowd, crowd])
    assert all(torch.isfinite(loss) for loss in losses.values())
    assert all(losses[name] == 0 for name in LOSS_NAMES[detector] - {"loss_cls"})


@pytest.mark.parametrize("detector", DETECTORS)
def test_labels_outside_num_classes_are_a_data_error(detector):
    with pytest.raises(DataError, match="num_classes=3"):
        tiny_detector(detector, num_classes=3).train()(images(1), [target([[4, 4, 30, 30]], [3])])


@pytest.mark.parametrize(("detector", "loss_bbox"),
                         [("retinanet", "l1"), ("retinanet", "smooth_l1"), ("retinanet", "giou"),
                          ("fcos", "giou"), ("fcos", "iou")])
def test_each_box_loss_trains_one_step(detector, loss_bbox):
    model = tiny_detector(detector, loss_bbox=loss_bbox).train()
    weight = model.head.regression_head.bbox_reg.weight
    before = weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    losses = model(images(), two_targets())
    assert torch.isfinite(losses["loss_bbox"]) and losses["loss_bbox"] > 0
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(before, weight)


@pytest.mark.parametrize(("head", "key", "value", "message"), [
    (RetinaHead, "loss_bbox", "gious", "did you mean 'giou'.*valid: l1, smooth_l1, giou"),
    (RetinaHead, "loss_cls", "cross_entropy", "unknown loss_cls 'cross_entropy'; valid: focal"),
    (FCOSHead, "loss_bbox", "l1", "unknown loss_bbox 'l1'; valid: giou, iou"),
    (FCOSHead, "loss_cls", "focall", "did you mean 'focal'.*valid: focal"),
])
def test_unknown_loss_is_a_recipe_error_naming_the_choices(head, key, value, message):
    with pytest.raises(RecipeError, match=message):
        head(in_channels=32, num_classes=3, **{key: value})


@pytest.mark.parametrize("detector", DETECTORS)
def test_engine_fit_trains_and_writes_bbox_metrics(detector, tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["model"] = {
        "type": detector,
        "backbone": recipe["model"]["backbone"],
        "neck": {"type": "fpn", "out_channels": 32, **P3_P7},
        "head": HEADS[detector],
    }
    metrics = Engine.from_recipe(recipe).fit()
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == metrics and {"bbox_mAP", "bbox_mAP_50"} <= written.keys()
    steps = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert LOSS_NAMES[detector] <= steps[0].keys()


# -- torchvision layout -----------------------------------------------------
def _torchvision_twin(detector: str):
    """A torchvision RetinaNet / FCOS on a ResNet-18 FPN (P3-P7 from P5) and our detector shaped alike."""
    fpn = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5, returned_layers=[2, 3, 4],
                              extra_blocks=LastLevelP6P7(256, 256))
    torchvision_class = TorchvisionRetinaNet if detector == "retinanet" else TorchvisionFCOS
    # An identity transform: no resizing (min_size = the image side), mean 0 and std 1.
    reference = torchvision_class(fpn, num_classes=3, min_size=SIZE, max_size=SIZE, image_mean=[0.0] * 3,
                                  image_std=[1.0] * 3, score_thresh=0.0, detections_per_img=100).eval()
    backbone = ResNet(depth=18, frozen_stages=-1, out_indices=[1, 2, 3])
    neck = FPN(backbone.out_channels, out_channels=256, extra="p6p7_on_p5")
    head = {"type": HEADS[detector]["type"], "score_thresh": 0.0}
    ours = BUILDERS[detector](backbone, neck, num_classes=3, head=head).eval()
    renamed = {}
    for key, value in reference.state_dict().items():
        renamed[key.replace("backbone.body.", "backbone.", 1).replace("backbone.fpn.", "neck.fpn.", 1)] = value
    return reference, ours, renamed


@pytest.mark.parametrize("detector", DETECTORS)
def test_torchvision_state_dict_loads_after_renaming_backbone_body_and_fpn(detector):
    _, ours, renamed = _torchvision_twin(detector)
    result = ours.load_state_dict(renamed, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("detector", DETECTORS)
def test_detections_equal_torchvisions_with_its_weights(detector):
    reference, ours, renamed = _torchvision_twin(detector)
    ours.load_state_dict(renamed)
    batch = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected, got = reference(list(batch)), ours(batch)
    for want, have in zip(expected, got):
        assert len(want["boxes"]) > 0
        assert torch.equal(want["labels"], have["labels"])
        torch.testing.assert_close(have["boxes"], want["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(have["scores"], want["scores"], atol=1e-4, rtol=0)


# -- heads --------------------------------------------------------------------
def test_retina_background_anchors_inside_a_crowd_region_are_ignored():
    head = RetinaHead(in_channels=32, num_classes=2)
    anchors = [torch.tensor([[0.0, 0, 16, 16], [40, 40, 56, 56], [100, 100, 116, 116]])]
    targets = [{"boxes": torch.tensor([[0.0, 0, 16, 16]]), "labels": torch.tensor([1]),
                "crowd_boxes": torch.tensor([[32.0, 32, 64, 64]])}]
    assert head.match(anchors, targets)[0].tolist() == [0, -2, -1]  # matched, ignored, background


def test_fcos_background_points_inside_a_crowd_region_are_ignored():
    head = FCOSHead(in_channels=32, num_classes=2, strides=[8])
    # Stride-8 squares around the points (8, 8), (48, 48) and (108, 108).
    squares = [torch.tensor([[4.0, 4, 12, 12], [44, 44, 52, 52], [104, 104, 112, 112]])]
    targets = [{"boxes": torch.tensor([[0.0, 0, 16, 16]]), "labels": torch.tensor([1]),
                "crowd_boxes": torch.tensor([[32.0, 32, 64, 64]])}]
    assert head.match(squares, targets, points_per_level=[3])[0].tolist() == [0, -2, -1]


def test_retina_head_num_convs_sets_the_tower_depth():
    head = RetinaHead(in_channels=32, num_classes=2, num_convs=2)
    assert len(head.classification_head.conv) == len(head.regression_head.conv) == 2


def test_group_norm_needs_channels_divisible_by_32():
    with pytest.raises(RecipeError, match="multiple of 32, got 48"):
        FCOSHead(in_channels=48, num_classes=2, norm="gn")


def test_retina_anchor_levels_that_do_not_match_the_features_are_a_recipe_error():
    backbone = ResNet(depth=18)
    model = build_retinanet(backbone, FPN(backbone.out_channels, out_channels=32, num_outs=4), num_classes=2).eval()
    with pytest.raises(RecipeError, match="anchor_sizes has 5 levels but the detector gives 4 feature maps"):
        model(images(1))


def test_fcos_strides_that_differ_from_the_necks_are_a_recipe_error():
    backbone = ResNet(depth=18)
    with pytest.raises(RecipeError, match=r"strides \[8, 16, 32, 64, 128\] differ .* \[4, 8, 16, 32, 64\]"):
        build_fcos(backbone, FPN(backbone.out_channels, out_channels=32), num_classes=2)


def test_registered_names_build_the_detectors_and_heads():
    backbone = build_component("backbone", {"type": "resnet", "depth": 18})
    neck = build_component("neck", {"type": "fpn", "out_channels": 32, **P3_P7}, in_channels=backbone.out_channels)
    retinanet = build_component("detector", {"type": "retinanet"}, backbone=backbone, neck=neck, num_classes=2)
    fcos = build_component("detector", {"type": "fcos"}, backbone=backbone, neck=neck, num_classes=2)
    assert isinstance(retinanet.head, RetinaHead) and isinstance(fcos.head, FCOSHead)
    assert [name for name, _ in fcos.named_children()] == ["backbone", "neck", "head"]


# -- FPN extra levels -----------------------------------------------------------
@pytest.mark.parametrize("extra", ["p6p7", "p6p7_on_p5"])
def test_fpn_p6p7_on_c3_to_c5_outputs_p3_to_p7(extra):
    backbone = ResNet(depth=18)
    neck = FPN(backbone.out_channels, out_channels=32, start_level=1, extra=extra)
    outputs = neck(backbone(torch.randn(1, 3, 2 * SIZE, 2 * SIZE)))
    assert list(outputs) == ["p3", "p4", "p5", "p6", "p7"]
    assert [2 * SIZE // o.shape[-1] for o in outputs.values()] == neck.strides == [8, 16, 32, 64, 128]
    assert neck.fpn.extra_blocks.use_P5 == (extra == "p6p7_on_p5")
    assert neck.fpn.extra_blocks.p6.in_channels == (32 if extra == "p6p7_on_p5" else 512)


def test_fpn_p6p7_needs_two_more_outputs_than_inputs():
    with pytest.raises(RecipeError, match="num_outs must be 6, got 5"):
        FPN([64, 128, 256, 512], extra="p6p7")


def test_fpn_unknown_extra_is_a_recipe_error_naming_the_choices():
    with pytest.raises(RecipeError, match="did you mean 'p6p7'.*valid: maxpool, p6p7, p6p7_on_p5"):
        FPN([64, 128, 256, 512], start_level=1, extra="p6p8")


@pytest.mark.parametrize("detector", DETECTORS)
def test_batched_training_losses_equal_the_per_image_losses(detector):
    from torchvision.models.detection.image_list import ImageList

    from detsdk.builtin.models.padded_targets import pad_targets

    model = tiny_detector(detector).train()
    batch = images()
    targets = [target([[4, 6, 40, 44], [30, 20, 60, 58], [0, 0, 30, 30]], [0, 2, 1], [False, False, True]),
               target([], [])]  # a crowd region, and an image without boxes
    features = model.extract_features(batch)
    image_list = ImageList(batch, [tuple(batch.shape[-2:])] * len(batch))
    _, batched = model.head(image_list, features, pad_targets(targets, label_offset=0))
    _, per_image = model.head(image_list, features, [model._head_target(t) for t in targets])
    assert batched.keys() == per_image.keys()
    for name, value in per_image.items():
        torch.testing.assert_close(batched[name], value, rtol=1e-4, atol=1e-6, msg=name)
