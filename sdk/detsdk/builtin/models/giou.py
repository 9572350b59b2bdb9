"""Generalized IoU loss of aligned box pairs without a host sync.

The formula of torchvision's ``generalized_box_iou_loss`` (Rezatofighi et al. 2019),
whose intersection goes through a boolean mask (a sync per call); here it is a
product of clamped sides, the same value and the same gradient away from touching edges.
"""

from __future__ import annotations

import torch


def giou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``1 - GIoU`` of each pair of ``N x 4`` boxes (x1 y1 x2 y2), float32 or wider: ``N``."""
    boxes1 = boxes1 if boxes1.is_floating_point() and boxes1.dtype != torch.bfloat16 else boxes1.float()
    boxes2 = boxes2.to(boxes1.dtype)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    inter = (torch.min(x2, x2g) - torch.max(x1, x1g)).clamp(min=0) * (torch.min(y2, y2g) - torch.max(y1, y1g)).clamp(min=0)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    enclosing = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (torch.max(y2, y2g) - torch.min(y1, y1g))
    return 1 - (iou - (enclosing - union) / (enclosing + eps))
