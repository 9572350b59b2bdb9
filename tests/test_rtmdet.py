"""RTMDet: the dynamic soft label assigner, QFL and GIoU on hand-computed cases, and a tiny detector end to end."""

from __future__ import annotations

import math

import pytest
import torch

from detsdk.builtin.models.cspnext import CSPNeXt
from detsdk.builtin.models.cspnext_pafpn import CSPNeXtPAFPN
from detsdk.builtin.models.distance_point_coder import bbox2distance, distance2bbox
from detsdk.builtin.models.dynamic_soft_label_assigner import Assignment, DynamicSoftLabelAssigner
from detsdk.builtin.models.quality_focal_loss import quality_focal_loss, quality_targets
from detsdk.builtin.models.rtmdet import build_rtmdet, padded_targets
from detsdk.builtin.models.rtmdet_head import RTMDetHead
from detsdk.errors import DataError, RecipeError


def _priors(points, stride=8.0):
    return torch.tensor([[x, y, stride, stride] for x, y in points], dtype=torch.float32)


def test_qfl_is_bce_times_distance_to_the_quality_squared():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # sigmoid 0.5 and 0.75
    quality = torch.tensor([[0.6, 0.0]])
    loss = quality_focal_loss(logits, quality, beta=2.0)
    # BCE(0, 0.6) = log 2 whatever the target; |0.6 - 0.5|^2 = 0.01. BCE(log 3, 0) = log 4; 0.75^2.
    assert torch.allclose(loss, torch.tensor([[math.log(2) * 0.01, math.log(4) * 0.5625]]), atol=1e-6)


def test_quality_targets_put_the_score_at_the_label_and_nothing_for_background():
    targets = quality_targets(torch.tensor([1, 3, -1]), torch.tensor([0.7, 0.9, 0.5]), num_classes=3)
    assert torch.equal(targets, torch.tensor([[0.0, 0.7, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))


def test_distance_coder_round_trips_and_clips():
    points = torch.tensor([[8.0, 8.0]])
    boxes = distance2bbox(points, torch.tensor([[10.0, 3.0, 4.0, 50.0]]), max_shape=(32, 16))
    assert boxes.tolist() == [[0.0, 5.0, 12.0, 32.0]]
    assert bbox2distance(points, torch.tensor([[6.0, 5.0, 12.0, 13.0]])).tolist() == [[2.0, 3.0, 4.0, 5.0]]


def test_assigner_takes_dynamic_k_cheapest_priors_inside_boxes_only():
    # One 32-px box; four priors inside it, one outside. IoUs 1, 1, 0.5, 0.25 (and 1 outside, never a
    # candidate): dynamic k = int(1 + 1 + 0.5 + 0.25) = 2, so the two exact boxes are positives.
    priors = _priors([(8, 8), (24, 8), (8, 24), (24, 24), (40, 40)])
    predicted = torch.tensor([[[0, 0, 32, 32], [0, 0, 32, 32], [0, 0, 16, 32], [0, 0, 16, 16], [0, 0, 32, 32]]])
    result = DynamicSoftLabelAssigner(topk=13).assign(
        priors, torch.zeros(1, 5, 1), predicted.float(), torch.tensor([[[0.0, 0, 32, 32]]]),
        torch.tensor([[0]]), torch.tensor([[True]]),
    )
    assert result.foreground.tolist() == [[True, True, False, False, False]]
    assert result.gt_index.tolist() == [[0, 0, -1, -1, -1]]
    assert torch.allclose(result.iou, torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]]))


def test_assigner_gives_a_prior_claimed_twice_to_its_cheaper_box_and_ignores_padding():
    # The prior (24, 8) lies in both boxes and each box's k is 1. Its prediction equals box B
    # (IoU 1; with A: 512 / 1536 = 1/3). Costs: A 3 * -log(1/3) + log2 * (1/3 - 1/2)^2 + centre;
    # B log2 * (1/2)^2 + the same centre: B is cheaper. Image 2 has only padding: all background.
    priors = _priors([(24, 8), (60, 60)])
    predicted = torch.tensor([[16.0, 0, 48, 32], [0, 0, 1, 1]]).expand(2, 2, 4)
    gt_boxes = torch.tensor([[[0.0, 0, 32, 32], [16, 0, 48, 32]], [[0.0, 0, 32, 32], [0, 0, 0, 0]]])
    valid = torch.tensor([[True, True], [False, False]])
    result = DynamicSoftLabelAssigner().assign(
        priors, torch.zeros(2, 2, 1), predicted, gt_boxes, torch.zeros(2, 2, dtype=torch.long), valid
    )
    assert result.gt_index.tolist() == [[1, -1], [-1, -1]]
    assert torch.allclose(result.iou, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


class _FixedAssigner:
    """Prior 0 positive for box 0 with IoU 0.5; prior 1 background."""

    def assign(self, priors, logits, boxes, gt_boxes, gt_labels, gt_valid):
        return Assignment(torch.tensor([[0, -1]]), torch.tensor([[0.5, 0.0]]), torch.tensor([[True, False]]))


def test_head_losses_are_qfl_and_weighted_giou_over_the_iou_sum():
    head = RTMDetHead(in_channels=8, num_classes=1, feat_channels=8, strides=[8])
    head.assigner = _FixedAssigner()
    priors = _priors([(1, 1), (50, 50)])
    distances = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]]])  # prior 0 predicts [0, 0, 2, 2]
    targets = {"boxes": torch.tensor([[[1.0, 1, 3, 3]]]), "labels": torch.tensor([[0]]), "valid": torch.tensor([[True]])}
    losses = head.loss(priors, torch.zeros(1, 2, 1), distances, targets)
    # QFL: the positive's quality 0.5 equals sigmoid(0): 0; the negative: log 2 * 0.5^2. Normaliser max(0.5, 1).
    assert losses["loss_cls"].item() == pytest.approx(math.log(2) * 0.25, abs=1e-6)
    # GIoU([0,0,2,2], [1,1,3,3]) = 1/7 - (9 - 7)/9; weight 2 * IoU 0.5.
    giou = 1 / 7 - 2 / 9
    assert losses["loss_bbox"].item() == pytest.approx(2 * 0.5 * (1 - giou), abs=1e-5)


def _tiny_rtmdet(num_classes=3, exp_on_reg=False):
    backbone = CSPNeXt(deepen_factor=0.167, widen_factor=0.125)
    neck = CSPNeXtPAFPN(backbone.out_channels, out_channels=16, num_csp_blocks=1)
    return build_rtmdet(backbone, neck, num_classes, {"type": "rtmdet_head", "feat_channels": 16, "exp_on_reg": exp_on_reg})


@pytest.mark.parametrize("exp_on_reg", [False, True])
def test_tiny_rtmdet_trains_every_parameter_and_predicts(exp_on_reg):
    torch.manual_seed(0)
    model = _tiny_rtmdet(exp_on_reg=exp_on_reg)
    images = torch.randn(2, 3, 64, 64)
    targets = [
        {"boxes": torch.tensor([[4.0, 4, 40, 44], [30, 20, 60, 60]]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_cls", "loss_bbox"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    untouched = [n for n, p in model.named_parameters() if p.grad is None]
    assert not untouched
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "scores", "labels"}
    assert (detections[0]["boxes"][:, 2:] <= 64).all() and (detections[0]["labels"] < 3).all()


def test_head_shares_tower_convs_across_levels_but_not_batch_norms():
    head = _tiny_rtmdet().head
    assert head.cls_convs[2][1].conv is head.cls_convs[0][1].conv
    assert head.cls_convs[2][1].bn is not head.cls_convs[0][1].bn
    assert "cls_convs.2.1.conv.weight" in head.state_dict()  # MMDetection's checkpoints list every level


def test_padded_targets_mark_crowd_and_empty_boxes_invalid_and_check_labels():
    targets = [
        {"boxes": torch.tensor([[0.0, 0, 4, 4], [1, 1, 1, 5], [2, 2, 6, 6]]), "labels": torch.tensor([0, 1, 2]),
         "iscrowd": torch.tensor([False, False, True])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    padded = padded_targets(targets, num_classes=3, device=torch.device("cpu"))
    assert padded["boxes"].shape == (2, 3, 4)
    assert padded["valid"].tolist() == [[True, False, False], [False, False, False]]
    with pytest.raises(DataError, match="below num_classes=2"):
        padded_targets(targets, num_classes=2, device=torch.device("cpu"))


def test_rtmdet_tiny_has_mmdetections_parameter_count():
    # MMDetection's metafile rounds RTMDet-tiny (80 classes) to 4.8 M parameters; ours count 4.90 M.
    backbone = CSPNeXt(deepen_factor=0.167, widen_factor=0.375)
    neck = CSPNeXtPAFPN(backbone.out_channels, out_channels=96, num_csp_blocks=1)
    model = build_rtmdet(backbone, neck, 80, {"type": "rtmdet_head", "feat_channels": 96})
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(4.85, abs=0.1)


def test_cspnext_loads_an_imagenet_file_with_mmdetections_prefix(tmp_path):
    source = CSPNeXt(deepen_factor=0.167, widen_factor=0.125)
    state = {f"backbone.{k}": v + 1 if v.is_floating_point() else v for k, v in source.state_dict().items()}
    state["head.fc.weight"] = torch.zeros(1000, 96)  # the ImageNet classifier: not the backbone's
    path = tmp_path / "cspnext_imagenet.pth"
    torch.save({"state_dict": state, "meta": {}}, path)
    loaded = CSPNeXt(deepen_factor=0.167, widen_factor=0.125, pretrained=str(path))
    torch.testing.assert_close(loaded.stem[0].conv.weight, source.stem[0].conv.weight + 1)
    with pytest.raises(RecipeError, match="path of a CSPNeXt .pth file"):
        CSPNeXt(pretrained="DEFAULT")


def test_rtmdet_trains_through_the_engine_with_its_coco_pipeline_on_shapes(tmp_path):
    from conftest import REPO

    from detsdk import Engine

    pipeline = (
        '[{type="mosaic", img_scale=[64, 64]}, {type="random_resize", scale=[128, 128], ratio_range=[0.5, 2.0]},'
        ' {type="random_crop", crop_size=[64, 64], allow_negative_crop=true}, {type="yolox_hsv"}, {type="random_flip"},'
        ' {type="pad", size=[64, 64], pad_value=114}, {type="mixup", img_scale=[64, 64], ratio_range=[1.0, 1.0]},'
        ' {type="normalize", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]}]'
    )
    overrides = [f'runtime.work_dir="{tmp_path}"', "train.iters=2", "data.batch_size=2", "data.num_workers=0",
                 "runtime.plot_samples=0", "data.train.num_images=6", "data.val.num_images=2",
                 "data.train.image_size=64", "data.val.image_size=64", f"data.train.pipeline={pipeline}"]
    engine = Engine.from_recipe(str(REPO / "examples" / "quickstart" / "rtmdet.toml"), overrides=overrides)
    metrics = engine.fit()
    assert "bbox_mAP" in metrics and engine.iteration == 2


def _reference_assign(priors, logits, boxes, gt_boxes, gt_labels, topk=13, radius=3.0, iou_weight=3.0):
    """MMDetection's DynamicSoftLabelAssigner.assign for one image, step by step as its source does it
    (valid priors only, a (priors, boxes, classes) class cost, a loop over boxes): gt index or -1, and IoU."""
    import torch.nn.functional as F
    from torchvision.ops import box_iou

    num_gt, num_priors = len(gt_boxes), len(priors)
    assigned, overlaps = torch.full((num_priors,), -1), torch.zeros(num_priors)
    centers = priors[:, :2]
    deltas = torch.cat([centers[:, None] - gt_boxes[:, :2], gt_boxes[:, 2:] - centers[:, None]], dim=-1)
    valid = (deltas.min(dim=-1).values > 0).sum(dim=1) > 0
    if not valid.any():
        return assigned, overlaps
    gt_center = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    distance = (priors[valid][:, None, :2] - gt_center[None]).pow(2).sum(-1).sqrt() / priors[valid][:, 2:3]
    ious = box_iou(boxes[valid], gt_boxes)
    onehot = F.one_hot(gt_labels, logits.shape[-1]).float()[None].repeat(int(valid.sum()), 1, 1)
    scores = logits[valid][:, None].repeat(1, num_gt, 1)
    soft = onehot * ious[..., None]
    cls_cost = (F.binary_cross_entropy_with_logits(scores, soft, reduction="none")
                * (soft - scores.sigmoid()).abs().pow(2)).sum(-1)
    cost = cls_cost - torch.log(ious + 1e-7) * iou_weight + torch.pow(10, distance - radius)
    matching = torch.zeros_like(cost, dtype=torch.uint8)
    dynamic_ks = torch.clamp(ious.topk(min(topk, len(ious)), dim=0).values.sum(0).int(), min=1)
    for g in range(num_gt):
        matching[cost[:, g].topk(int(dynamic_ks[g]), largest=False).indices, g] = 1
    twice = matching.sum(1) > 1
    if twice.any():
        matching[twice] = 0
        matching[twice, cost[twice].argmin(1)] = 1
    fg = matching.sum(1) > 0
    index = torch.nonzero(valid).squeeze(1)[fg]
    assigned[index] = matching[fg].argmax(1)
    overlaps[index] = (matching * ious).sum(1)[fg]
    return assigned, overlaps


def test_batched_assigner_matches_mmdetections_per_image_algorithm_on_random_cases():
    torch.manual_seed(3)
    assigner = DynamicSoftLabelAssigner()
    head = RTMDetHead(in_channels=8, num_classes=4, feat_channels=8)
    priors = head.priors([(8, 8), (4, 4), (2, 2)], torch.device("cpu"))
    batch, counts = 3, [5, 2, 0]
    logits = torch.randn(batch, len(priors), 4)
    corners = torch.rand(batch, len(priors), 2) * 64
    boxes = torch.cat([corners, corners + 4 + torch.rand(batch, len(priors), 2) * 30], dim=-1)
    gt_boxes, gt_labels = torch.zeros(batch, 5, 4), torch.zeros(batch, 5, dtype=torch.long)
    gt_valid = torch.zeros(batch, 5, dtype=torch.bool)
    for b, count in enumerate(counts):
        start = torch.rand(count, 2) * 40
        gt_boxes[b, :count] = torch.cat([start, start + 8 + torch.rand(count, 2) * 24], dim=-1)
        gt_labels[b, :count] = torch.randint(0, 4, (count,))
        gt_valid[b, :count] = True
    result = assigner.assign(priors, logits, boxes, gt_boxes, gt_labels, gt_valid)
    assert result.foreground[:2].any()
    for b, count in enumerate(counts):
        expected, overlaps = _reference_assign(priors, logits[b], boxes[b], gt_boxes[b, :count], gt_labels[b, :count])
        assert result.gt_index[b].tolist() == expected.tolist()
        torch.testing.assert_close(result.iou[b], overlaps)
