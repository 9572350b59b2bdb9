"""RTMDet's dynamic soft label assigner (MMDetection's ``DynamicSoftLabelAssigner``), batched and sync-free.

For every prior whose point lies inside some ground-truth box, the cost of matching it to
each box is the soft classification cost (QFL of the prediction against the IoU at the box's
class), ``iou_weight * -log(IoU)`` and a soft centre prior ``10 ** (distance / stride -
soft_center_radius)``. Each box takes its ``k`` cheapest priors, ``k`` being the sum of its
``topk`` best IoUs (at least 1), as SimOTA; a prior claimed twice keeps the cheapest box.

MMDetection loops over images and boxes with data-dependent shapes; here the batch's boxes
are padded to one size (``gt_valid`` marks the real ones) and every step is a tensor op of
fixed shape, so assignment needs no host synchronisation. The class cost is summed without
a ``(priors, boxes, classes)`` tensor: the negative term summed over all classes, minus
itself at the box's class, plus the positive term there (the same sum, in less memory).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

INF = 1e8
EPS = 1e-7


@attrs.frozen
class Assignment:
    """Per image and prior: ``gt_index`` (``-1`` background), ``iou`` with it (0 for background), ``foreground``."""

    gt_index: torch.Tensor
    iou: torch.Tensor
    foreground: torch.Tensor


class DynamicSoftLabelAssigner:
    """Assign priors to boxes by dynamic-k matching on a soft-label cost (RTMDet).

    Args:
        topk: candidates whose IoUs are summed into each box's dynamic ``k`` (13).
        soft_center_radius: the centre prior's radius in strides (3.0).
        iou_weight: the factor on the ``-log(IoU)`` cost (3.0).
    """

    def __init__(self, topk: int = 13, soft_center_radius: float = 3.0, iou_weight: float = 3.0):
        self.topk = topk
        self.soft_center_radius = soft_center_radius
        self.iou_weight = iou_weight

    @torch.no_grad()
    def assign(
        self,
        priors: torch.Tensor,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_valid: torch.Tensor,
    ) -> Assignment:
        """Match priors to ground truth.

        Args:
            priors: ``(P, 4)`` points and strides, ``x y stride_w stride_h``.
            logits: ``(B, P, C)`` classification logits.
            boxes: ``(B, P, 4)`` decoded predicted boxes.
            gt_boxes: ``(B, G, 4)`` ground truth, padded; ``gt_labels`` ``(B, G)`` 0-based.
            gt_valid: ``(B, G)`` bool, the real (unpadded) boxes.
        """
        batch, num_priors = logits.shape[:2]
        num_gt = gt_boxes.shape[1]
        logits, boxes, gt_boxes, priors = logits.float(), boxes.float(), gt_boxes.float(), priors.float()
        if num_gt == 0 or num_priors == 0:
            return Assignment(
                torch.full((batch, num_priors), -1, dtype=torch.long, device=logits.device),
                logits.new_zeros((batch, num_priors)),
                torch.zeros((batch, num_priors), dtype=torch.bool, device=logits.device),
            )
        points, strides = priors[:, :2], priors[:, 2]
        # (B, P, G): the prior's point strictly inside the box.
        sides = torch.cat(
            [points[None, :, None] - gt_boxes[:, None, :, :2], gt_boxes[:, None, :, 2:] - points[None, :, None]], dim=-1
        )
        inside = (sides.amin(dim=-1) > 0) & gt_valid[:, None, :]
        candidate = inside.any(dim=-1)  # (B, P): MMDetection's valid_mask
        pair_valid = candidate[:, :, None] & gt_valid[:, None, :]

        centers = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
        distance = (points[None, :, None] - centers[:, None]).pow(2).sum(-1).sqrt() / strides[None, :, None]
        center_cost = torch.pow(10.0, distance - self.soft_center_radius)

        ious = torch.stack([box_iou(b, g) for b, g in zip(boxes, gt_boxes)])  # (B, P, G)
        # Inverted predictions (distances may be negative without exp_on_reg) can make a union 0 or below.
        ious = torch.where(pair_valid, ious.nan_to_num(0.0).clamp(0.0, 1.0), torch.zeros_like(ious))
        iou_cost = -torch.log(ious + EPS) * self.iou_weight

        probability = logits.sigmoid()
        negative = F.softplus(logits) * probability.pow(2)  # BCE(x, 0) * sigmoid(x) ** 2, per class
        labels = gt_labels.long().clamp(min=0)[:, None, :].expand(batch, num_priors, num_gt)
        at_label = logits.gather(2, labels)
        positive = F.binary_cross_entropy_with_logits(at_label, ious, reduction="none") * (
            ious - at_label.sigmoid()
        ).pow(2)
        class_cost = negative.sum(-1, keepdim=True) - negative.gather(2, labels) + positive

        cost = class_cost + iou_cost + center_cost
        cost = torch.where(pair_valid, cost, torch.full_like(cost, INF))

        # Dynamic k per box from its best IoUs; then each box's k cheapest priors.
        k = min(self.topk, num_priors)
        dynamic_k = ious.topk(k, dim=1).values.sum(dim=1).int().clamp(min=1)  # (B, G)
        cheapest = cost.topk(k, dim=1, largest=False)
        chosen = torch.arange(k, device=cost.device)[None, :, None] < dynamic_k[:, None, :]
        chosen &= cheapest.values < INF / 2
        matching = torch.zeros_like(cost, dtype=torch.bool).scatter_(1, cheapest.indices, chosen)

        # A prior claimed by several boxes keeps the cheapest of all boxes (as MMDetection).
        claimed_twice = matching.sum(-1, keepdim=True) > 1
        cheapest_box = F.one_hot(cost.argmin(-1), num_gt).bool()
        matching = torch.where(claimed_twice, cheapest_box, matching)

        foreground = matching.any(-1)
        gt_index = torch.where(foreground, matching.int().argmax(-1), torch.full_like(foreground, -1, dtype=torch.long))
        iou = (matching * ious).sum(-1)
        return Assignment(gt_index, iou, foreground)
