"""A batch's ground truth as padded tensors, so that matching and losses need no host sync.

torchvision's heads take one target dict per image and filter them with boolean
masks (``boxes[keep]``), each of which waits for the device. ``PaddedTargets``
holds the batch as ``B x M`` tensors (``M`` the most boxes of any image, known on
the host from the tensors' shapes) with flags for what is trainable and what is a
crowd region; padding rows are unit boxes flagged neither, so every later formula
stays finite.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from detsdk.errors import DataError

PAD_BOX = (0.0, 0.0, 1.0, 1.0)  # finite in every box formula (area, IoU, log-width encoding)


@attrs.frozen
class PaddedTargets:
    """The ground truth of a batch of ``B`` images, padded to ``M`` boxes each.

    Attributes:
        boxes: float32 ``B x M x 4`` (x1 y1 x2 y2 pixels); padding rows are ``PAD_BOX``.
        labels: int64 ``B x M`` in the head's convention (padding: 0).
        trainable: bool ``B x M``: a non-crowd box with area (neither padding nor crowd).
        crowd: bool ``B x M``: a crowd region with area (its anchors and proposals are ignored).
        masks: uint8 ``N x H x W``, every image's masks one after the other (``N`` the real
            boxes of the batch, zero-padded to the largest image, then one empty mask), or None.
        first_mask: int64 ``B``: the index in ``masks`` of each image's first box.
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    trainable: torch.Tensor
    crowd: torch.Tensor
    masks: torch.Tensor | None = None
    first_mask: torch.Tensor | None = None

    @property
    def num_images(self) -> int:
        """``B``."""
        return self.boxes.shape[0]


def check_target_labels(targets: list[dict], num_classes: int) -> None:
    """A ``DataError`` unless every label is 0-based and below ``num_classes``; read on the host.

    Called on the data side, before the batch goes to the device (``TrainStep``); labels
    already on an accelerator are not read here (that would wait for it).
    """
    for index, target in enumerate(targets):
        labels = target.get("labels")
        if labels is None or not torch.is_tensor(labels) or labels.device.type != "cpu" or labels.numel() == 0:
            continue
        values = labels.numpy() if labels.dtype != torch.bool else labels.to(torch.int64).numpy()
        low, high = int(np.min(values)), int(np.max(values))
        if low < 0 or high >= num_classes:
            raise DataError(
                f"target labels must be 0-based and below num_classes={num_classes}; got {low}..{high} "
                f"(image {index} of the batch)"
            )


def pad_targets(targets: list[dict[str, torch.Tensor]], label_offset: int, with_masks: bool = False) -> PaddedTargets:
    """``PaddedTargets`` from per-image dicts (``boxes``, 0-based ``labels``, optional ``iscrowd``, ``masks``).

    ``label_offset`` is added to the labels (1 for the two-stage heads, whose 0 is
    background). Nothing here reads a tensor's values on the host.
    """
    device = targets[0]["boxes"].device
    counts = [t["boxes"].reshape(-1, 4).shape[0] for t in targets]
    width = max(1, max(counts))
    boxes = torch.tensor(PAD_BOX, device=device).repeat(len(targets), width, 1)
    labels = torch.zeros((len(targets), width), dtype=torch.int64, device=device)
    crowd_flags = torch.zeros((len(targets), width), dtype=torch.bool, device=device)
    real = torch.zeros((len(targets), width), dtype=torch.bool, device=device)
    for i, (target, count) in enumerate(zip(targets, counts)):
        if count == 0:
            continue
        boxes[i, :count] = target["boxes"].reshape(-1, 4).float()
        labels[i, :count] = target["labels"].reshape(-1).to(torch.int64) + label_offset
        real[i, :count] = True
        crowd = target.get("iscrowd")
        if crowd is not None:
            crowd_flags[i, :count] = crowd.reshape(-1).to(torch.bool)
    has_area = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1]) & real
    masks = first_mask = None
    if with_masks:
        height = max(t["masks"].shape[-2] for t in targets)
        width = max(t["masks"].shape[-1] for t in targets)
        # One spare empty mask at the end: every index a padding slot can hold stays in range.
        masks = torch.zeros((sum(counts) + 1, height, width), dtype=torch.uint8, device=device)
        start = 0
        for target, count in zip(targets, counts):
            image_masks = target["masks"]
            masks[start : start + count, : image_masks.shape[-2], : image_masks.shape[-1]] = image_masks
            start += count
        starts = np.cumsum([0, *counts[:-1]])
        first_mask = torch.as_tensor(starts, dtype=torch.int64).to(device, non_blocking=True)
    return PaddedTargets(
        boxes=boxes, labels=labels, trainable=has_area & ~crowd_flags, crowd=has_area & crowd_flags,
        masks=masks, first_mask=first_mask,
    )


def accepts_padded_targets(*heads: object) -> bool:
    """Whether every head takes ``PaddedTargets`` (its class sets ``accepts_padded_targets = True``)."""
    return all(getattr(head, "accepts_padded_targets", False) for head in heads)


@attrs.frozen
class PaddedProposals:
    """A fixed number ``K`` of proposals per image: ``boxes`` float32 ``B x K x 4``, ``valid`` bool ``B x K``."""

    boxes: torch.Tensor
    valid: torch.Tensor


@attrs.frozen
class PaddedPositives:
    """The box head's positive samples, ``P`` slots per image (what a mask head trains on).

    ``boxes`` float32 ``B x P x 4``, ``labels`` int64 ``B x P`` (1-based), ``valid`` bool
    ``B x P`` and ``matched`` int64 ``B x P``, each slot's ground-truth index in its image.
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor
    matched: torch.Tensor
