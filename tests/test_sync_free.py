"""Sync-free training (issue #13): batched matching and sampling, fp32 anchors, no host syncs, padding."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign

from detsdk.builtin.models import FPN, ResNet, build_faster_rcnn
from detsdk.builtin.models.anchors import Float32AnchorGenerator
from detsdk.builtin.models.batched_assign import match, sample
from detsdk.builtin.models.level_roi_align import pool_levels
from detsdk.builtin.models.padded_targets import pad_targets
from detsdk.engine.train_setup import compile_model
from detsdk.engine.train_step import pad_to_multiple

COUNT_SYNCS = Path(__file__).resolve().parents[1] / "benchmarks" / "count_syncs.py"


def sync_counter():
    spec = importlib.util.spec_from_file_location("count_syncs", COUNT_SYNCS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SyncCounter()


def tiny_detector():
    backbone = ResNet(depth=18, frozen_stages=1)
    return build_faster_rcnn(backbone, FPN(backbone.out_channels, out_channels=32), num_classes=3,
                             box_head={"type": "shared2fc_box_head", "fc_channels": 32})


def batch(size: int):
    targets = [
        {"boxes": torch.tensor([[4.0, 6, 40, 44], [30, 20, 60, 58]]), "labels": torch.tensor([0, 2]),
         "iscrowd": torch.tensor([False, True])},
        {"boxes": torch.tensor([[10.0, 10, 50, 30]]), "labels": torch.tensor([1])},
    ]
    return torch.randn(size, 3, 64, 64), [targets[i % 2] for i in range(size)]


@pytest.mark.parametrize("low_quality", [True, False])
def test_batched_match_equals_torchvisions_matcher_per_image(low_quality):
    torch.manual_seed(0)
    iou = torch.rand(3, 4, 50) * (torch.rand(3, 4, 50) > 0.5)
    valid = torch.tensor([[True, True, True, True], [True, True, False, False], [False] * 4])
    codes = match(iou, valid, 0.7, 0.3, allow_low_quality_matches=low_quality)
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=low_quality)
    for image in range(2):
        assert torch.equal(codes[image], matcher(iou[image][valid[image]]))
    assert (codes[2] == -1).all()  # no box: every candidate is background


def test_sample_draws_torchvisions_counts_from_the_candidates_only():
    positive = torch.zeros(2, 100, dtype=torch.bool)
    positive[0, :5] = True
    positive[1, :60] = True
    negative = ~positive
    negative[1, 60:] = False  # image 1: 60 positives, no negatives
    chosen = sample(positive, negative, batch_size_per_image=32, positive_fraction=0.25)
    picked_positive = chosen.positive
    assert picked_positive.sum(dim=1).tolist() == [5, 8]  # min(#positives, 32 * 0.25)
    assert chosen.valid.sum(dim=1).tolist() == [32, 8]  # negatives fill the rest, if there are any
    for image in range(2):
        index = chosen.index[image][chosen.valid[image]]
        assert len(set(index.tolist())) == len(index)  # without replacement
        assert positive[image][chosen.index[image][picked_positive[image]]].all()
        assert negative[image][chosen.index[image][chosen.valid[image] & ~picked_positive[image]]].all()


def test_anchors_stay_float32_under_bf16_features():
    generator = Float32AnchorGenerator(((32,),), ((1.0,),))
    images = ImageList(torch.zeros(1, 3, 800, 1344), [(800, 1333)])
    bf16 = generator(images, [torch.zeros(1, 8, 200, 336, dtype=torch.bfloat16)])[0]
    fp32 = generator(images, [torch.zeros(1, 8, 200, 336)])[0]
    assert bf16.dtype == torch.float32 and torch.equal(bf16, fp32)
    assert torch.unique(bf16[:, 0]).numel() == 336  # bf16 anchors would merge neighbours near x = 1333


@pytest.mark.parametrize("size", [2, 4])
def test_a_faster_rcnn_training_step_syncs_only_for_nms_at_any_batch(size):
    torch.manual_seed(0)
    model = tiny_detector().train()
    model.rpn.nms_per_image = False  # the CUDA path (one NMS call for the batch), as count_syncs.py counts it
    images, targets = batch(size)
    counter = sync_counter()
    with counter:
        losses = model(images, targets)
        sum(losses.values()).backward()
    assert dict(counter.syncs) == {"nms": 1}
    assert all(torch.isfinite(v) for v in losses.values())


def test_on_the_cpu_the_rpn_runs_nms_per_image_and_keeps_the_same_proposals():
    model = tiny_detector().train()
    images, targets = batch(3)
    losses = {}
    for per_image in (None, False):  # None: by device, so per image here on the CPU
        model.rpn.nms_per_image = per_image
        torch.manual_seed(0)
        counter = sync_counter()
        with counter:
            losses[per_image] = model(images, targets)
        assert counter.syncs["nms"] == (3 if per_image is None else 1)
    for name, value in losses[None].items():
        assert torch.equal(value, losses[False][name]), name


def test_padded_targets_flag_crowd_padding_and_empty_boxes():
    targets = [
        {"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 5, 9], [0, 0, 20, 20]]), "labels": torch.tensor([1, 2, 0]),
         "iscrowd": torch.tensor([False, False, True])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    padded = pad_targets(targets, label_offset=1)
    assert padded.boxes.shape == (2, 3, 4) and padded.labels[0].tolist() == [2, 3, 1]
    assert padded.trainable.tolist() == [[True, False, False], [False, False, False]]  # no area, crowd, padding
    assert padded.crowd.tolist() == [[False, False, True], [False, False, False]]


def test_pad_to_multiple_pads_bottom_and_right_only():
    images = torch.ones(2, 3, 50, 70)
    padded = pad_to_multiple(images, 32)
    assert padded.shape == (2, 3, 64, 96)
    assert torch.equal(padded[..., :50, :70], images) and padded[..., 50:, :].abs().sum() == 0


def test_compile_scope_model_compiles_the_whole_detector():
    model, backbone_only = tiny_detector(), tiny_detector()
    compile_model(model, {"scope": "model", "backend": "eager"})
    compile_model(backbone_only, {"backend": "eager"})
    assert model._compiled_call_impl is not None and model.backbone._compiled_call_impl is None
    assert backbone_only._compiled_call_impl is None and backbone_only.backbone._compiled_call_impl is not None


def test_level_roi_align_matches_torchvisions_multiscale_roi_align():
    torch.manual_seed(0)
    features = {str(i): torch.randn(2, 8, 64 // 2**i, 96 // 2**i) for i in range(4)}
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    corner = torch.rand(2, 30, 2) * torch.tensor([300.0, 200.0])
    boxes = torch.cat([corner, (corner + torch.rand(2, 30, 2) * 300 + 1).clamp(max=torch.tensor([384.0, 256.0]))], -1)
    boxes[0, 0] = torch.tensor([0.0, 0, 384, 256])  # a whole-image RoI samples up to the maps' far edges
    shapes = [(256, 384)] * 2
    expected = pooler(features, list(boxes), shapes)
    torch.testing.assert_close(pool_levels(pooler, features, boxes, shapes), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("ddp_comm", "int8", 'expected "none", "fp16" or "bf16"'),
    ("compile", {"scope": "heads"}, "'scope' = 'heads' is not valid"),
    ("ddp_bucket_mb", 0, "expected an integer >= 1"),
])
def test_throughput_recipe_keys_are_checked(key, value, message):
    from detsdk.errors import RecipeError
    from detsdk.recipe.load import load_recipe
    from detsdk.recipe.schema import validate_recipe

    with pytest.raises(RecipeError, match=re.escape(message)):
        validate_recipe(load_recipe({"train": {key: value}}))


def test_loss_readouts_are_read_together_and_name_the_first_bad_iteration():
    from detsdk.engine.loss_readout import LossReadout, read_losses
    from detsdk.errors import TrainingError

    names = ["loss", "loss_cls", "loss_bbox"]
    good = LossReadout(names, torch.tensor([3.0, 1.0, 2.0]), iteration=7, epoch=1)
    bad = LossReadout(names, torch.tensor([float("nan"), 1.0, float("nan")]), iteration=8, epoch=2)
    later = LossReadout(names, torch.tensor([float("inf"), float("inf"), 1.0]), iteration=9, epoch=2)
    assert "unread" in repr(good)
    with pytest.raises(TrainingError, match=r"at iteration 8 \(epoch 2\): loss_bbox = nan"):
        read_losses([good, bad, later])
    assert dict(good) == {"loss": 3.0, "loss_cls": 1.0, "loss_bbox": 2.0}
