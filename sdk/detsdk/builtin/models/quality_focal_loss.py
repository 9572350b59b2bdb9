"""Quality focal loss (Li et al. 2020, Generalized Focal Loss), as MMDetection's ``QualityFocalLoss``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def quality_focal_loss(logits: torch.Tensor, quality: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Element-wise QFL: ``BCE(logit, q) * |q - sigmoid(logit)| ** beta``.

    Args:
        logits: classification logits ``(..., C)``.
        quality: soft targets of the same shape: the IoU of a positive's box at its class,
            0 everywhere else (negatives are supervised towards 0).
        beta: the modulating exponent.

    Returns the loss per element (sum it, then divide by the positives' IoU sum as RTMDet does).

    >>> round(quality_focal_loss(torch.zeros(1, 1), torch.ones(1, 1)).item(), 4)  # log(2) * 0.5**2
    0.1733
    """
    modulation = (quality - logits.sigmoid()).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(logits, quality, reduction="none") * modulation


def quality_targets(labels: torch.Tensor, scores: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Soft targets ``(..., C)`` from labels and scores: ``score`` at the label, 0 elsewhere.

    A label outside ``0..num_classes - 1`` (background: ``num_classes`` or ``-1``) gives a row of zeros.
    """
    foreground = (labels >= 0) & (labels < num_classes)
    one_hot = F.one_hot(torch.where(foreground, labels, 0).long(), num_classes).to(scores.dtype)
    return one_hot * (scores * foreground).unsqueeze(-1)
