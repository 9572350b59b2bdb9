"""Matching and sampling for a whole batch at once, with fixed-size outputs: no host sync.

The same rules as torchvision's ``Matcher`` and ``BalancedPositiveNegativeSampler``,
written on ``B x ...`` tensors: instead of ``nonzero`` and ``randperm``, a sample is
the top-k of random keys among the candidates, with a flag saying which of the k
slots are real (fewer candidates than slots).
"""

from __future__ import annotations

import attrs
import torch

BACKGROUND = -1  # torchvision's Matcher.BELOW_LOW_THRESHOLD
IGNORED = -2  # torchvision's Matcher.BETWEEN_THRESHOLDS


def batched_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of ``B x N x 4`` and ``B x K x 4`` boxes: ``B x N x K`` (torchvision's ``box_iou`` per image)."""
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    top_left = torch.max(boxes1[:, :, None, :2], boxes2[:, None, :, :2])
    bottom_right = torch.min(boxes1[:, :, None, 2:], boxes2[:, None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, :, None] + area2[:, None, :] - inter)


def match(
    iou: torch.Tensor, gt_valid: torch.Tensor, high: float, low: float, allow_low_quality_matches: bool
) -> torch.Tensor:
    """torchvision's ``Matcher`` on ``B x M x N`` IoU (ground truth x candidates): ``B x N`` codes.

    ``>= 0`` the matched box, ``BACKGROUND`` below ``low``, ``IGNORED`` in between; boxes
    with ``gt_valid`` false never match. With ``allow_low_quality_matches`` each box's
    best candidates (ties included) keep their best match whatever its IoU.
    """
    quality = torch.where(gt_valid[:, :, None], iou, torch.full_like(iou, -1.0))
    best, index = quality.max(dim=1)
    codes = torch.where(best < low, BACKGROUND, torch.where(best < high, IGNORED, index))
    if allow_low_quality_matches:
        highest = quality.max(dim=2, keepdim=True).values
        is_best = ((quality == highest) & gt_valid[:, :, None]).any(dim=1)
        codes = torch.where(is_best, index, codes)
    return codes


def inside_crowd(boxes: torch.Tensor, crowd_boxes: torch.Tensor, crowd: torch.Tensor, thresh: float) -> torch.Tensor:
    """``B x N``: whether each box lies mostly inside a crowd region (intersection over its own area > ``thresh``)."""
    if thresh >= 1:
        return torch.zeros(boxes.shape[:2], dtype=torch.bool, device=boxes.device)
    top_left = torch.max(boxes[:, :, None, :2], crowd_boxes[:, None, :, :2])
    bottom_right = torch.min(boxes[:, :, None, 2:], crowd_boxes[:, None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])).clamp(min=1e-6)
    ioa = wh[..., 0] * wh[..., 1] / area[:, :, None]
    return ((ioa > thresh) & crowd[:, None, :]).any(dim=2)


@attrs.frozen
class Sample:
    """Fixed-size sample per image: ``index`` ``B x S`` into the candidates, ``valid`` ``B x S``.

    The first ``num_positive_slots`` slots hold positives, the rest negatives; real
    ones first within each part is not guaranteed, so always weigh by ``valid``.
    """

    index: torch.Tensor
    valid: torch.Tensor
    num_positive_slots: int

    @property
    def positive(self) -> torch.Tensor:
        """``B x S``: a real positive slot."""
        slots = torch.arange(self.index.shape[1], device=self.index.device) < self.num_positive_slots
        return self.valid & slots


def sample(positive: torch.Tensor, negative: torch.Tensor, batch_size_per_image: int, positive_fraction: float) -> Sample:
    """torchvision's balanced sampler on ``B x N`` masks, with random keys and top-k.

    Per image: ``min(#positives, int(batch_size_per_image * positive_fraction))``
    positives and ``min(#negatives, batch_size_per_image - that)`` negatives, each
    drawn uniformly without replacement.
    """
    count = positive.shape[1]
    wanted_positive = int(batch_size_per_image * positive_fraction)
    keys = torch.rand(positive.shape, device=positive.device)
    pos_keys, pos_index = torch.where(positive, keys, -1.0).topk(min(wanted_positive, count), dim=1)
    pos_valid = pos_keys >= 0
    num_positive = pos_valid.sum(dim=1, keepdim=True)
    neg_keys, neg_index = torch.where(negative, keys, -1.0).topk(min(batch_size_per_image, count), dim=1)
    rank = torch.arange(neg_keys.shape[1], device=positive.device)
    neg_valid = (neg_keys >= 0) & (rank < batch_size_per_image - num_positive)
    return Sample(
        index=torch.cat([pos_index, neg_index], dim=1),
        valid=torch.cat([pos_valid, neg_valid], dim=1),
        num_positive_slots=pos_index.shape[1],
    )


def gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b, k]]`` for ``B x N x ...`` values and ``B x K`` indices: ``B x K x ...``."""
    expanded = index.reshape(*index.shape, *([1] * (values.dim() - 2))).expand(*index.shape, *values.shape[2:])
    return values.gather(1, expanded)
