"""Faster R-CNN: backbone, optional neck, RPN and RoI box head, composed like torchvision's GeneralizedRCNN."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList

from detsdk.errors import DataError, RecipeError
from detsdk.builtin.models.detector_inputs import checked_image_sizes, extract_features, split_target
from detsdk.builtin.models.padded_targets import (
    PaddedTargets, accepts_padded_targets, check_target_labels, pad_targets,
)
from detsdk.plugins.build import build_component


class FasterRCNN(nn.Module):
    """A two-stage detector from parts: ``backbone``, ``neck`` (or ``None``), ``rpn``, ``roi_heads``.

    Images arrive already resized, normalized and padded (det-sdk's pipeline does that),
    so there is no GeneralizedRCNNTransform. Labels are 0-based outside this module
    (``num_classes`` foreground classes, MMDetection's convention); the heads use
    torchvision's convention (``0`` is background) and the shift happens here.

    Without a neck, only the backbone's last (coarsest) map is used, so ``rpn_head``
    needs a single level of ``anchor_sizes`` (for example ``[[32, 64, 128, 256, 512]]``).

    Crowd boxes (``iscrowd`` true) are never trained on: they are taken out of the
    targets and passed to the heads as ``crowd_boxes``, which ignore (neither positive
    nor negative) background anchors and proposals lying mostly inside them. Boxes
    with no area are dropped.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module | None, rpn: nn.Module, roi_heads: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.num_classes = num_classes

    def extract_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone (and neck) features, fine to coarse; without a neck only the coarsest map."""
        return extract_features(self.backbone, self.neck, images)

    def forward(
        self,
        images: torch.Tensor,
        targets: list[dict[str, torch.Tensor]] | None = None,
        image_sizes: list[tuple[int, int]] | None = None,
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Losses in training, detections in eval.

        Args:
            images: float ``[B, 3, H, W]``, normalized and padded.
            targets: training only; per image ``boxes`` (float ``N x 4``, x1 y1 x2 y2 pixels),
                ``labels`` (int64 ``N``, 0-based) and optionally ``iscrowd`` (bool ``N``).
            image_sizes: each image's ``(h, w)`` before padding; default: ``(H, W)``.

        Returns:
            training: ``{"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"}`` scalars;
            eval: per image ``{"boxes": K x 4, "scores": K, "labels": int64 K (0-based)}``,
            boxes clipped to the image size.
        """
        image_sizes = checked_image_sizes("FasterRCNN", images, targets, image_sizes, self.training)
        head_targets = None
        if self.training:
            self.check_targets(targets)  # labels still on the host (TrainStep checks before moving them)
            if accepts_padded_targets(self.rpn, self.roi_heads):
                head_targets = self.padded_targets(targets)
            else:  # a plugin's head: per-image dicts, as torchvision's heads take them
                head_targets = [self._head_target(t) for t in targets]
        features = self.extract_features(images)
        proposals, rpn_losses = self.rpn(ImageList(images, image_sizes), features, head_targets)
        detections, roi_losses = self.second_stage(features, proposals, image_sizes, head_targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        for detection in detections:
            detection["labels"] = detection["labels"] - 1
        return detections

    def second_stage(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """The RoI heads on the proposals: ``(detections, {})`` in eval, ``(positives, losses)`` in training.

        Labels are 1-based here (``0`` is background). Mask R-CNN extends this with its mask branch.
        """
        return self.roi_heads(features, proposals, image_sizes, targets)

    def check_targets(self, targets: list[dict[str, torch.Tensor]]) -> None:
        """Check a batch's labels on the host, before it goes to the device (``TrainStep`` calls this)."""
        check_target_labels(targets, self.num_classes)

    def padded_targets(self, targets: list[dict[str, torch.Tensor]]) -> PaddedTargets:
        """The batch's ground truth padded (labels 1-based), for heads that take ``PaddedTargets``."""
        return pad_targets(targets, label_offset=1)

    def _head_target(self, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Split crowd boxes off, drop boxes without area and shift labels to background-0 (masks follow boxes)."""
        boxes, labels, keep, crowd_boxes = split_target(target)
        head_target = {"boxes": boxes[keep], "labels": labels[keep] + 1, "crowd_boxes": crowd_boxes}
        if "masks" in target:
            masks = target["masks"]
            if masks.dim() != 3 or masks.shape[0] != labels.numel():
                raise DataError(
                    f"target masks must be N x H x W with one mask per box; got shape {tuple(masks.shape)} "
                    f"for {labels.numel()} boxes"
                )
            head_target["masks"] = masks[keep]
        return head_target


def build_faster_rcnn(
    backbone: nn.Module,
    neck: nn.Module | None,
    num_classes: int,
    rpn_head: dict[str, Any] = {"type": "rpn_head"},  # noqa: B006 (never mutated)
    box_head: dict[str, Any] = {"type": "shared2fc_box_head"},  # noqa: B006
) -> FasterRCNN:
    """Faster R-CNN from a built backbone and neck and two head tables.

    Each head is built with ``in_channels`` (the neck's ``out_channels``, or the backbone's
    last ``out_channels`` without a neck) and ``num_classes`` (foreground classes).

    >>> model = build_faster_rcnn(ResNet(depth=18), FPN([64, 128, 256, 512]), num_classes=3)  # doctest: +SKIP
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise RecipeError(f"detector faster_rcnn: num_classes must be a positive integer, got {num_classes!r}")
    in_channels = neck.out_channels if neck is not None else backbone.out_channels[-1]
    rpn = build_component("head", rpn_head, where="model.rpn_head", in_channels=in_channels, num_classes=num_classes)
    roi_heads = build_component(
        "head", box_head, where="model.box_head", in_channels=in_channels, num_classes=num_classes
    )
    return FasterRCNN(backbone, neck, rpn, roi_heads, num_classes)
