"""Mask R-CNN and its FCN mask head: shapes, losses, masks in eval, end to end (tiny settings, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from conftest import tiny_recipe

from detsdk import Engine, load_detector
from detsdk.builtin.models import FPN, ResNet
from detsdk.builtin.models.mask_head import FCNMaskHead, paste_masks
from detsdk.builtin.models.mask_rcnn import MaskRCNN, build_mask_rcnn
from detsdk.errors import DataError, RecipeError
from detsdk.plugins.build import build_component

SIZE = 64
LOSS_NAMES = {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"}


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def tiny_mask_rcnn(num_classes: int = 3, neck_channels: int = 32, **mask_head) -> MaskRCNN:
    backbone = ResNet(depth=18, frozen_stages=1)
    return build_mask_rcnn(
        backbone,
        FPN(backbone.out_channels, out_channels=neck_channels),
        num_classes=num_classes,
        box_head={"type": "shared2fc_box_head", "fc_channels": 64, "score_thresh": 0.0},
        mask_head={"type": "fcn_mask_head", "conv_channels": 16, "num_convs": 2, **mask_head},
    )


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE)


def target(boxes, labels, iscrowd=None) -> dict[str, torch.Tensor]:
    """A target whose masks fill the left half of each box, so masks and boxes differ."""
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    masks = torch.zeros((len(boxes), SIZE, SIZE), dtype=torch.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        mask[y1:y2, x1 : (x1 + x2) // 2] = 1
    result = {"boxes": boxes, "labels": torch.tensor(labels, dtype=torch.int64), "masks": masks}
    if iscrowd is not None:
        result["iscrowd"] = torch.tensor(iscrowd, dtype=torch.bool)
    return result


def two_targets() -> list[dict[str, torch.Tensor]]:
    return [target([[4, 6, 40, 44], [30, 20, 60, 58]], [0, 2]), target([[10, 10, 50, 30]], [1])]


def pyramid(channels: int = 8) -> dict[str, torch.Tensor]:
    return {f"p{i + 2}": torch.randn(1, channels, SIZE // 2 ** (i + 2), SIZE // 2 ** (i + 2)) for i in range(5)}


# -- the mask head ----------------------------------------------------------
@pytest.mark.parametrize(("roi_size", "mask_size"), [(14, 28), (7, 14)])
def test_mask_head_predicts_one_mask_per_class_and_background_at_twice_the_roi_size(roi_size, mask_size):
    head = FCNMaskHead(in_channels=8, num_classes=3, roi_size=roi_size, conv_channels=16)
    boxes = [torch.tensor([[0.0, 0, 20, 20], [10, 12, 60, 50], [5, 5, 9, 40]])]
    logits = head(pyramid(), boxes, [(SIZE, SIZE)])
    assert logits.shape == (3, 4, mask_size, mask_size)


def test_mask_head_pastes_each_box_own_class_probabilities_into_the_image_size():
    head = FCNMaskHead(in_channels=8, num_classes=3, conv_channels=16)
    boxes = [torch.tensor([[0.0, 0, 20, 20], [10, 12, 60, 50]]), torch.zeros((0, 4))]
    logits = head(pyramid(), boxes, [(SIZE, 48), (40, SIZE)])
    masks = head.predict(logits, boxes, [torch.tensor([1, 3]), torch.zeros(0, dtype=torch.int64)], [(SIZE, 48), (40, SIZE)])
    assert [m.shape for m in masks] == [(2, 1, SIZE, 48), (0, 1, 40, SIZE)]
    assert masks[0].min() >= 0 and masks[0].max() <= 1


def test_paste_fills_exactly_the_pixels_whose_centres_lie_in_the_box():
    full = torch.ones(1, 1, 28, 28)
    pasted = paste_masks(full, torch.tensor([[10.4, 20.6, 30.6, 44.4]]), (SIZE, 48))
    expected = torch.zeros(SIZE, 48, dtype=torch.bool)
    expected[21:44, 10:31] = True  # centres 10.5..30.5 and 21.5..43.5
    assert pasted.shape == (1, 1, SIZE, 48) and torch.equal(pasted[0, 0] >= 0.5, expected)


def test_default_paste_is_torchvision_paste_masks_in_image():
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    head = FCNMaskHead(in_channels=8, num_classes=3, conv_channels=16)
    boxes = [torch.tensor([[3.3, 5.7, 40.2, 30.9]])]
    logits = head(pyramid(), boxes, [(SIZE, SIZE)])
    (masks,) = head.predict(logits, boxes, [torch.tensor([2])], [(SIZE, SIZE)])
    expected = paste_masks_in_image(logits[:, 2:3].sigmoid(), boxes[0], (SIZE, SIZE))
    assert torch.allclose(masks, expected, atol=1e-6)


def test_unknown_paste_is_a_recipe_error_naming_the_choices():
    with pytest.raises(RecipeError, match="did you mean 'mmdet'.*valid: torchvision, mmdet"):
        FCNMaskHead(in_channels=8, num_classes=3, paste="mmdetection")


def test_mask_head_loss_is_scaled_by_its_weight():
    gt = target([[4, 6, 40, 44]], [0])
    boxes = [torch.tensor([[4.0, 6, 40, 44]])]
    head = FCNMaskHead(in_channels=8, num_classes=3, conv_channels=16, loss_mask_weight=2.0)
    logits = head(pyramid(), boxes, [(SIZE, SIZE)])
    weighted = head.loss(logits, boxes, [gt["masks"]], [gt["labels"] + 1], [torch.tensor([0])])
    head.loss_mask_weight = 1.0
    plain = head.loss(logits, boxes, [gt["masks"]], [gt["labels"] + 1], [torch.tensor([0])])
    assert plain > 0 and weighted.item() == pytest.approx(2 * plain.item())


def test_mask_head_loss_is_zero_not_nan_without_rois():
    head = FCNMaskHead(in_channels=8, num_classes=3, conv_channels=16)
    boxes = [torch.zeros((0, 4))]
    logits = head(pyramid(), boxes, [(SIZE, SIZE)])
    loss = head.loss(logits, boxes, [torch.zeros((0, SIZE, SIZE), dtype=torch.uint8)],
                     [torch.zeros(0, dtype=torch.int64)], [torch.zeros(0, dtype=torch.int64)])
    assert loss == 0


# -- Mask R-CNN -------------------------------------------------------------
def test_training_forward_returns_the_five_finite_losses():
    losses = tiny_mask_rcnn().train()(images(), two_targets())
    assert set(losses) == LOSS_NAMES
    assert all(loss.dim() == 0 and torch.isfinite(loss) for loss in losses.values())
    assert losses["loss_mask"] > 0


def test_backward_gives_gradients_to_the_mask_head_and_the_shared_features():
    model = tiny_mask_rcnn().train()
    model(images(), two_targets())["loss_mask"].backward()
    for name in ("roi_heads.mask_head.0.0.weight", "roi_heads.mask_predictor.conv5_mask.weight",
                 "roi_heads.mask_predictor.mask_fcn_logits.weight", "neck.fpn.layer_blocks.0.0.weight",
                 "backbone.layer2.0.conv1.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_crowd_instances_are_not_mask_targets():
    losses = tiny_mask_rcnn().train()(images(1), [target([[0, 0, 64, 64]], [1], iscrowd=[True])])
    assert losses["loss_mask"] == 0


def test_images_without_instances_train_with_a_zero_mask_loss():
    losses = tiny_mask_rcnn().train()(images(), [target([], []), target([], [])])
    assert all(torch.isfinite(loss) for loss in losses.values()) and losses["loss_mask"] == 0


def test_training_targets_without_masks_are_a_data_error_naming_with_masks():
    targets = [{k: v for k, v in t.items() if k != "masks"} for t in two_targets()]
    with pytest.raises(DataError, match="with_masks = true"):
        tiny_mask_rcnn().train()(images(), targets)


def test_masks_that_do_not_match_the_boxes_are_a_data_error():
    broken = two_targets()
    broken[0]["masks"] = broken[0]["masks"][:1]
    with pytest.raises(DataError, match="one mask per box"):
        tiny_mask_rcnn().train()(images(), broken)


def test_eval_returns_float_masks_in_each_image_size_one_per_detection():
    sizes = [(64, 48), (40, 64)]
    with torch.no_grad():
        detections = tiny_mask_rcnn().eval()(images(), image_sizes=sizes)
    for detection, (h, w) in zip(detections, sizes):
        assert set(detection) == {"boxes", "scores", "labels", "masks"}
        assert len(detection["boxes"]) > 0
        assert detection["masks"].shape == (len(detection["boxes"]), 1, h, w)
        assert detection["masks"].dtype == torch.float32
        assert detection["masks"].min() >= 0 and detection["masks"].max() <= 1


@pytest.mark.parametrize(("paste", "tolerance"), [("mmdet", 1), ("torchvision", 3)])
def test_eval_masks_are_pasted_at_their_boxes(paste, tolerance):
    model = tiny_mask_rcnn(paste=paste).eval()
    logits = model.roi_heads.mask_predictor.mask_fcn_logits
    torch.nn.init.zeros_(logits.weight)
    torch.nn.init.constant_(logits.bias, 10.0)  # every mask is the whole RoI
    with torch.no_grad():
        detection = model(images(1))[0]
    boxes, masks = detection["boxes"], detection["masks"][:, 0] >= 0.5
    large = ((boxes[:, 2:] - boxes[:, :2]) >= 4).all(dim=1)
    assert large.sum() > 0
    for box, mask in zip(boxes[large], masks[large]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        extent = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        assert (extent - box).abs().max() <= tolerance, (box, extent)


def test_eval_masks_map_back_to_the_original_image_through_resize_flip_and_pad():
    from detsdk.engine.evaluation import to_original_coordinates

    meta = {"ori_shape": (50, 70), "img_shape": (100, 140), "pad_shape": (128, 160), "scale_factor": (2.0, 2.0),
            "flip": True, "flip_direction": "horizontal"}
    box = torch.tensor([[20.0, 10, 60, 50]])
    masks = paste_masks(torch.ones(1, 1, 28, 28), box, (128, 160))  # the detector's N x 1 x H x W output
    result = to_original_coordinates(
        {"boxes": box, "scores": torch.ones(1), "labels": torch.zeros(1, dtype=torch.int64), "masks": masks}, meta
    )
    ys, xs = np.nonzero(result["masks"][0])
    assert result["masks"].shape == (1, 50, 70) and result["masks"].dtype == np.uint8
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [40, 5, 60, 25] == result["boxes"][0].tolist()


def test_mask_parts_carry_torchvision_roi_heads_keys_saved_once():
    model = tiny_mask_rcnn(num_classes=4, neck_channels=256, conv_channels=256, num_convs=4)
    ours = {k: v.shape for k, v in model.state_dict().items() if k.startswith("roi_heads.mask")}
    reference = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5)
    theirs = {k: v.shape for k, v in reference.state_dict().items() if k.startswith("roi_heads.mask")}
    assert ours == theirs
    assert [name for name, _ in model.named_children()] == ["backbone", "neck", "rpn", "roi_heads"]


def test_registered_mask_rcnn_builds_through_the_registry():
    backbone = build_component("backbone", {"type": "resnet", "depth": 18})
    neck = build_component("neck", {"type": "fpn", "out_channels": 32}, in_channels=backbone.out_channels)
    model = build_component("detector", {"type": "mask_rcnn", "mask_head": {"type": "fcn_mask_head", "conv_channels": 8}},
                            backbone=backbone, neck=neck, num_classes=2)
    assert isinstance(model, MaskRCNN) and isinstance(model.mask_branch, FCNMaskHead)
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 3  # 2 classes + background


# -- end to end ---------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny Mask R-CNN run on shapes with masks, shared by the tests that read its outputs."""
    work_dir = tmp_path_factory.mktemp("mask_run")
    recipe = tiny_recipe(work_dir, eval={"metric": {"type": "coco", "iou_types": ["bbox", "segm"]}})
    recipe["model"]["type"] = "mask_rcnn"
    recipe["model"]["box_head"]["score_thresh"] = 0.0  # detections even after four iterations
    recipe["model"]["mask_head"] = {"type": "fcn_mask_head", "num_convs": 2, "conv_channels": 16}
    for split in ("train", "val"):
        recipe["data"][split]["with_masks"] = True
    metrics = Engine.from_recipe(recipe).fit()
    return metrics, work_dir


def test_fit_writes_segm_map_into_metrics_json(trained):
    metrics, work_dir = trained
    written = json.loads((work_dir / "metrics.json").read_text())
    assert written == metrics
    assert {f"segm_mAP{s}" for s in ("", "_50", "_75", "_s", "_m", "_l")} <= written.keys()
    assert "bbox_mAP" in written
    records = [json.loads(line) for line in (work_dir / "log.jsonl").read_text().splitlines()]
    assert "loss_mask" in records[0]


def test_load_detector_predicts_uint8_masks_of_the_original_image_size(trained):
    _, work_dir = trained
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    result = load_detector(work_dir / "last.pt", device="cpu").predict(image)
    assert len(result) > 0
    assert result.masks.shape == (len(result), 50, 70) and result.masks.dtype == np.uint8
    assert set(np.unique(result.masks)) <= {0, 1}


def test_sdk_predict_draws_the_masks(trained, tmp_path, monkeypatch):
    import cv2
    from click.testing import CliRunner

    from detsdk.cli import cli
    from detsdk.data import draw as plots  # where sdk predict takes draw_detections from

    drawn_masks = []

    def draw_detections(image, *args, **kwargs):
        drawn_masks.append(args[4])
        return original(image, *args, **kwargs)

    original = plots.draw_detections
    monkeypatch.setattr(plots, "draw_detections", draw_detections)
    _, work_dir = trained
    image = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "img.png"), image)
    args = ["predict", str(work_dir / "last.pt"), str(tmp_path / "img.png"), "--out", str(tmp_path / "out"),
            "--score-thr", "0", "--device", "cpu"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(tmp_path / "out" / "img.png")).shape == (48, 64, 3)
    (masks,) = drawn_masks
    assert masks is not None and len(masks) > 0 and masks.shape[1:] == (48, 64) and masks.any()


def test_quickstart_mask_rcnn_recipe_resolves_and_validates():
    from click.testing import CliRunner
    from conftest import REPO

    from detsdk.cli import cli

    result = CliRunner().invoke(cli, ["recipe", "show", str(REPO / "examples" / "quickstart" / "mask_rcnn.toml")])
    assert result.exit_code == 0, result.output
    assert 'type = "mask_rcnn"' in result.output and "with_masks = true" in result.output
