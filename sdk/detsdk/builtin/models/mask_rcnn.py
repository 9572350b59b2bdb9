"""Mask R-CNN: Faster R-CNN plus a mask head on the RoIs, with torchvision's module layout."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.ops import box_iou

from detsdk.builtin.models.faster_rcnn import FasterRCNN
from detsdk.builtin.models.padded_targets import PaddedPositives, PaddedTargets, pad_targets
from detsdk.errors import DataError, RecipeError
from detsdk.plugins.build import build_component


class MaskRCNN(FasterRCNN):
    """Faster R-CNN whose RoIs also get an instance mask (``mask_head``, e.g. ``FCNMaskHead``).

    The mask head trains on the box head's positive samples, each against the mask of the
    ground truth it overlaps most (the box head's own matching); crowd instances, like their
    boxes, are never targets. In eval it predicts a mask for every detected box.

    The mask head's parts (``mask_roi_pool``, ``mask_head``, ``mask_predictor``) are placed
    inside ``roi_heads``, where torchvision's ``RoIHeads`` keeps them: a torchvision
    ``maskrcnn_resnet50_fpn`` state dict maps by the same renames as Faster R-CNN's
    (``backbone.body.`` -> ``backbone.``, ``backbone.fpn.`` -> ``neck.fpn.``; ``rpn.*`` and
    ``roi_heads.*``, masks included, unchanged). The head itself is ``mask_branch``.

    ``forward(images, targets=None, image_sizes=None)``: in training the targets also carry
    ``masks`` (uint8 ``N x H x W`` in the input's pixels, one per box) and the losses are
    Faster R-CNN's four plus ``loss_mask``; in eval each detection also has ``masks``, float
    probabilities ``K x 1 x h x w`` pasted into its image size ``(h, w)``. ``export_detections``
    gives ``box_masks`` instead: ``K x M x M`` and not pasted, which keeps the paste out of the graph.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module | None,
        rpn: nn.Module,
        roi_heads: nn.Module,
        mask_head: nn.Module,
        num_classes: int,
    ):
        super().__init__(backbone, neck, rpn, roi_heads, num_classes)
        for name, part in mask_head.named_children():
            if getattr(roi_heads, name, None) is not None:
                raise RecipeError(
                    f"detector mask_rcnn: the box head ({type(roi_heads).__name__}) already has a '{name}'; "
                    f"the mask head's parts cannot join it"
                )
            setattr(roi_heads, name, part)
        # Not registered as a submodule: its parameters are roi_heads' (above), so they are saved once.
        object.__setattr__(self, "mask_branch", mask_head)
        self.exporting = False  # export_detections: box-relative masks, pasted by the runtime

    def train(self, mode: bool = True) -> MaskRCNN:
        """Set training mode, on the mask head too (its parts follow ``roi_heads`` anyway)."""
        super().train(mode)
        self.mask_branch.train(mode)
        return self

    def second_stage(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """The box head, then the mask head on its positive samples (training) or its detections (eval)."""
        results, losses = super().second_stage(features, proposals, image_sizes, targets)
        if isinstance(results, PaddedPositives):
            mask_logits = self.mask_branch.forward_padded(features, results.boxes, image_sizes)
            losses["loss_mask"] = self.mask_branch.padded_loss(mask_logits, results, targets)
            return results, losses
        if len(results) != len(image_sizes):
            raise RecipeError(
                f"detector mask_rcnn: the box head ({type(self.roi_heads).__name__}) returned {len(results)} "
                f"results for {len(image_sizes)} images; in training it must return each image's positive samples"
            )
        boxes = [result["boxes"] for result in results]
        mask_logits = self.mask_branch(features, boxes, image_sizes)
        if self.training:
            matched_idxs = [_matched_ground_truth(t["boxes"], b) for t, b in zip(targets, boxes)]
            gt_masks = [t["masks"] for t in targets]
            gt_labels = [t["labels"] for t in targets]
            losses["loss_mask"] = self.mask_branch.loss(mask_logits, boxes, gt_masks, gt_labels, matched_idxs)
            return results, losses
        labels = [r["labels"] for r in results]
        if self.exporting:
            for result, mask in zip(results, self.mask_branch.box_masks(mask_logits, labels)):
                result["box_masks"] = mask
            return results, losses
        masks = self.mask_branch.predict(mask_logits, boxes, labels, image_sizes)
        for result, mask in zip(results, masks):
            result["masks"] = mask
        return results, losses

    def export_detections(self, images: torch.Tensor, image_sizes: list) -> list[dict[str, torch.Tensor]]:
        """Eval detections with ``box_masks`` (``K x M x M`` own-class probabilities) instead of pasted
        ``masks``: the export contract's box-relative form, pasted on the host as ``mask_paste`` says."""
        self.exporting = True
        try:
            return self(images, image_sizes=image_sizes)
        finally:
            self.exporting = False

    @property
    def mask_paste(self) -> str:
        """How the mask head pastes (``"torchvision"`` or ``"mmdet"``), for pasting exported ``box_masks``."""
        return getattr(self.mask_branch, "paste", "torchvision")

    def _head_target(self, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Faster R-CNN's head target, which must carry one mask per box."""
        _check_masks(target)
        return super()._head_target(target)

    def padded_targets(self, targets: list[dict[str, torch.Tensor]]) -> PaddedTargets:
        """Faster R-CNN's padded targets with every image's masks (one per box)."""
        for target in targets:
            _check_masks(target)
        if not getattr(self.mask_branch, "accepts_padded_targets", False):
            raise RecipeError(
                f"detector mask_rcnn: the mask head ({type(self.mask_branch).__name__}) does not take padded targets "
                "(accepts_padded_targets), but the box head does; give it forward_padded and padded_loss"
            )
        return pad_targets(targets, label_offset=1, with_masks=True)


def _check_masks(target: dict[str, torch.Tensor]) -> None:
    """A ``DataError`` unless the target carries an ``N x H x W`` mask per box (shapes only: no sync)."""
    if "masks" not in target:
        raise DataError(
            "Mask R-CNN trains on instance masks but a training target has none; "
            "set with_masks = true on the training dataset"
        )
    masks, count = target["masks"], target["labels"].numel()
    if masks.dim() != 3 or masks.shape[0] != count:
        raise DataError(
            f"target masks must be N x H x W with one mask per box; got shape {tuple(masks.shape)} for {count} boxes"
        )


def _matched_ground_truth(gt_boxes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """For each positive RoI, the index of the ground-truth box it overlaps most (the box head's match)."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    return box_iou(gt_boxes.to(boxes.dtype), boxes).max(dim=0).indices


def build_mask_rcnn(
    backbone: nn.Module,
    neck: nn.Module | None,
    num_classes: int,
    rpn_head: dict[str, Any] = {"type": "rpn_head"},  # noqa: B006 (never mutated)
    box_head: dict[str, Any] = {"type": "shared2fc_box_head"},  # noqa: B006
    mask_head: dict[str, Any] = {"type": "fcn_mask_head"},  # noqa: B006
) -> MaskRCNN:
    """Mask R-CNN from a built backbone and neck and three head tables.

    Each head is built with ``in_channels`` (the neck's ``out_channels``, or the backbone's
    last ``out_channels`` without a neck) and ``num_classes`` (foreground classes).

    >>> model = build_mask_rcnn(ResNet(depth=18), FPN([64, 128, 256, 512]), num_classes=3)  # doctest: +SKIP
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise RecipeError(f"detector mask_rcnn: num_classes must be a positive integer, got {num_classes!r}")
    in_channels = neck.out_channels if neck is not None else backbone.out_channels[-1]
    heads = {
        key: build_component("head", spec, where=f"model.{key}", in_channels=in_channels, num_classes=num_classes)
        for key, spec in (("rpn_head", rpn_head), ("box_head", box_head), ("mask_head", mask_head))
    }
    return MaskRCNN(backbone, neck, heads["rpn_head"], heads["box_head"], heads["mask_head"], num_classes)
