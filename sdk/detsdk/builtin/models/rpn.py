"""Region proposal network head: torchvision's RegionProposalNetwork with crowd regions ignored."""

from __future__ import annotations

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.rpn import RPNHead as RPNConvHead
from torchvision.ops import box_area, box_iou

from detsdk.errors import RecipeError


def ignore_crowd_overlaps(
    boxes: torch.Tensor, labels: torch.Tensor, crowd_boxes: torch.Tensor | None, thresh: float
) -> torch.Tensor:
    """Relabel negatives (``0``) lying mostly inside a crowd region as ignored (``-1``).

    "Mostly inside" means intersection over the box's own area above ``thresh``;
    positives stay positive. torchvision's samplers skip ``-1``, so such anchors or
    proposals are neither foreground nor background. ``thresh >= 1`` turns this off.
    """
    if crowd_boxes is None or crowd_boxes.numel() == 0 or boxes.numel() == 0 or thresh >= 1:
        return labels
    iou = box_iou(boxes, crowd_boxes)
    area = box_area(boxes)[:, None]
    # iou = inter / (a + c - inter)  =>  inter = iou * (a + c) / (1 + iou)
    inter = iou * (area + box_area(crowd_boxes)[None, :]) / (1 + iou)
    inside_crowd = (inter / area.clamp(min=1e-6)).amax(dim=1) > thresh
    labels = labels.clone()
    labels[inside_crowd & (labels == 0)] = -1
    return labels


class RPNHead(RegionProposalNetwork):
    """Region proposal network: anchors, a 3x3 conv head, matching, sampling and NMS (torchvision).

    Args:
        in_channels: channels of every feature map (injected by the detector).
        num_classes: accepted because the detector passes it to every head; proposals are
            class-agnostic, so it is not used.
        anchor_sizes: anchor sizes in pixels, one list per feature level (fine to coarse).
        aspect_ratios: anchor height/width ratios, the same on every level.
        fg_iou_thresh, bg_iou_thresh: IoU at or above which an anchor is foreground, below
            which it is background (in between: ignored).
        batch_size_per_image, positive_fraction: anchors sampled per image for the loss.
        pre_nms_top_n_train, pre_nms_top_n_test: proposals kept per level before NMS.
        post_nms_top_n_train, post_nms_top_n_test: proposals kept per image after NMS.
        nms_thresh: NMS IoU threshold between proposals.
        crowd_ioa_thresh: anchors that would be background but lie inside a crowd region
            (intersection over anchor area above this) are ignored; ``1.0`` turns it off.
        num_convs: 3x3 convs (each followed by ReLU) before the objectness and box layers:
            1 as in torchvision's ``fasterrcnn_resnet50_fpn`` and MMDetection, 2 as in
            ``fasterrcnn_resnet50_fpn_v2``.

    ``forward(images: ImageList, features: dict, targets=None)`` returns
    ``(proposals per image, losses)`` with losses ``loss_rpn_cls`` and ``loss_rpn_bbox``.
    Targets carry ``boxes`` (crowd excluded) and optionally ``crowd_boxes``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int = 1,
        anchor_sizes: list[list[int]] = [[32], [64], [128], [256], [512]],  # noqa: B006
        aspect_ratios: list[float] = [0.5, 1.0, 2.0],  # noqa: B006
        fg_iou_thresh: float = 0.7,
        bg_iou_thresh: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n_train: int = 2000,
        pre_nms_top_n_test: int = 1000,
        post_nms_top_n_train: int = 2000,
        post_nms_top_n_test: int = 1000,
        nms_thresh: float = 0.7,
        crowd_ioa_thresh: float = 0.5,
        num_convs: int = 1,
    ):
        sizes = tuple(tuple(level) if isinstance(level, (list, tuple)) else (level,) for level in anchor_sizes)
        if not sizes or any(not level for level in sizes):
            raise RecipeError(f"head rpn_head: anchor_sizes must be one non-empty list per level, got {anchor_sizes!r}")
        ratios = tuple(float(r) for r in aspect_ratios)
        anchor_generator = AnchorGenerator(sizes=sizes, aspect_ratios=(ratios,) * len(sizes))
        if len({len(level) for level in sizes}) != 1:
            raise RecipeError("head rpn_head: every level of anchor_sizes needs the same number of sizes")
        if isinstance(num_convs, bool) or not isinstance(num_convs, int) or num_convs < 1:
            raise RecipeError(f"head rpn_head: num_convs must be a positive integer, got {num_convs!r}")
        head = RPNConvHead(in_channels, anchor_generator.num_anchors_per_location()[0], conv_depth=num_convs)
        super().__init__(
            anchor_generator,
            head,
            fg_iou_thresh=fg_iou_thresh,
            bg_iou_thresh=bg_iou_thresh,
            batch_size_per_image=batch_size_per_image,
            positive_fraction=positive_fraction,
            pre_nms_top_n={"training": pre_nms_top_n_train, "testing": pre_nms_top_n_test},
            post_nms_top_n={"training": post_nms_top_n_train, "testing": post_nms_top_n_test},
            nms_thresh=nms_thresh,
        )
        self.crowd_ioa_thresh = crowd_ioa_thresh
        self.num_levels = len(sizes)

    def assign_targets_to_anchors(self, anchors, targets):
        """torchvision's matching, then background anchors inside crowd regions become ignored."""
        labels, matched_gt_boxes = super().assign_targets_to_anchors(anchors, targets)
        labels = [
            ignore_crowd_overlaps(a, lab, t.get("crowd_boxes"), self.crowd_ioa_thresh)
            for a, lab, t in zip(anchors, labels, targets)
        ]
        return labels, matched_gt_boxes

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        """torchvision's loss; zero (not NaN) when every anchor is ignored, e.g. an all-crowd image."""
        if not any(bool((lab >= 0).any()) for lab in labels):
            return objectness.sum() * 0, pred_bbox_deltas.sum() * 0
        return super().compute_loss(objectness, pred_bbox_deltas, labels, regression_targets)

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Proposals (x1 y1 x2 y2, per image) and, in training, ``loss_rpn_cls`` and ``loss_rpn_bbox``."""
        if len(features) != self.num_levels:
            raise RecipeError(
                f"head rpn_head: anchor_sizes has {self.num_levels} levels but the detector gives "
                f"{len(features)} feature maps ({', '.join(features)}); set anchor_sizes to {len(features)} lists"
            )
        proposals, losses = super().forward(images, features, targets)
        if losses:
            losses = {"loss_rpn_cls": losses["loss_objectness"], "loss_rpn_bbox": losses["loss_rpn_box_reg"]}
        return proposals, losses

