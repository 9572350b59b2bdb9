"""What every built-in detector does with its inputs before its heads: features, sizes, targets."""

from __future__ import annotations

import torch
from torch import nn



def extract_features(backbone: nn.Module, neck: nn.Module | None, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Backbone (and neck) features, fine to coarse; without a neck only the coarsest map."""
    features = backbone(images)
    if neck is not None:
        return neck(features)
    name, feature = list(features.items())[-1]
    return {name: feature}


def checked_image_sizes(
    detector: str, images: torch.Tensor, targets: list | None, image_sizes: list | None, training: bool
) -> list[tuple[int, int]]:
    """Each image's ``(h, w)`` before padding (default: the tensor's), checked against the batch and targets."""
    if image_sizes is None:
        image_sizes = [tuple(images.shape[-2:])] * images.shape[0]
    if not torch.jit.is_tracing():  # ONNX export traces the sizes, so the graph takes any height and width
        image_sizes = [(int(h), int(w)) for h, w in image_sizes]
    if len(image_sizes) != images.shape[0]:
        raise ValueError(f"got {len(image_sizes)} image_sizes for {images.shape[0]} images")
    if training and (targets is None or len(targets) != images.shape[0]):
        raise ValueError(f"{detector} needs one target dict per image in training mode")
    return image_sizes


def split_target(target: dict[str, torch.Tensor]):
    """``(boxes, labels, keep, crowd_boxes)``: ``keep`` marks non-crowd boxes with area.

    The per-image form that heads without ``accepts_padded_targets`` take; labels are
    checked on the host beforehand (``padded_targets.check_target_labels``).
    """
    boxes = target["boxes"].float().reshape(-1, 4)
    labels = target["labels"].to(torch.int64).reshape(-1)
    crowd = target.get("iscrowd")
    crowd = torch.zeros_like(labels, dtype=torch.bool) if crowd is None else crowd.to(torch.bool).reshape(-1)
    has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes, labels, has_area & ~crowd, boxes[has_area & crowd]
