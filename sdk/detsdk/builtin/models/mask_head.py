"""RoI mask head: MMDetection's FCNMaskHead on torchvision's Mask R-CNN parts."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_inference, maskrcnn_loss, paste_masks_in_image
from torchvision.ops import MultiScaleRoIAlign, roi_align

from detsdk.builtin.models.level_roi_align import pool_levels
from detsdk.builtin.models.padded_targets import PaddedPositives, PaddedTargets
from detsdk.errors import RecipeError, suggest

PASTES = ("torchvision", "mmdet")


def _check_positive(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RecipeError(f"head fcn_mask_head: {name} must be an integer >= {minimum}, got {value!r}")


class FCNMaskHead(nn.Module):
    """Mask branch of Mask R-CNN: RoIAlign, a stack of 3x3 convs, a 2x deconv and per-class mask logits.

    MMDetection's ``FCNMaskHead`` (4 convs of 256 channels on 14x14 RoIs, 28x28 masks, one
    mask per class, binary cross-entropy on the ground-truth class's mask), built from
    torchvision's ``MultiScaleRoIAlign``, ``MaskRCNNHeads`` and ``MaskRCNNPredictor``. The
    predictor has ``num_classes + 1`` outputs, background included, as torchvision's, so
    torchvision Mask R-CNN weights fit it; the background mask is never trained or used.

    Args:
        in_channels: channels of every feature map (injected by the detector).
        num_classes: foreground classes (injected).
        roi_size: RoIAlign output size; masks are predicted at twice this (28 for 14).
        sampling_ratio: RoIAlign sampling points per bin side (0: adaptive, MMDetection's choice;
            on a CPU, 1 makes training noticeably faster, since RoIAlign's backward dominates).
        num_levels: pool from this many of the finest feature maps (4: p2-p5 of a 5-level FPN);
            the level of an RoI follows the FPN paper, as in the box head.
        num_convs: 3x3 convolutions (with ReLU) before the deconvolution.
        conv_channels: channels of those convolutions and of the deconvolution.
        loss_mask_weight: factor on ``loss_mask``.
        paste: how eval masks are pasted at their boxes: ``"torchvision"`` (its
            ``paste_masks_in_image``: integer boxes, one pixel larger; torchvision's outputs
            exactly) or ``"mmdet"`` (continuous box coordinates, as MMDetection; see
            ``paste_masks``; 0.012 segm_mAP more on the 16-64 px shapes).

    Its parts keep torchvision's ``RoIHeads`` names (``mask_roi_pool``, ``mask_head``,
    ``mask_predictor``); Mask R-CNN places them inside its ``roi_heads``, so a torchvision
    state dict loads by the same key renames as Faster R-CNN's.

    >>> head = FCNMaskHead(in_channels=256, num_classes=80)
    >>> logits = head(features, [boxes], [(800, 1216)])     # doctest: +SKIP
    >>> logits.shape                                          # K x 81 x 28 x 28
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        roi_size: int = 14,
        sampling_ratio: int = 2,
        num_levels: int = 4,
        num_convs: int = 4,
        conv_channels: int = 256,
        loss_mask_weight: float = 1.0,
        paste: str = "torchvision",
    ):
        super().__init__()
        if paste not in PASTES:
            raise RecipeError(
                f"head fcn_mask_head: unknown paste '{paste}'{suggest(str(paste), PASTES)}; valid: {', '.join(PASTES)}"
            )
        _check_positive("roi_size", roi_size)
        _check_positive("sampling_ratio", sampling_ratio, minimum=0)
        _check_positive("num_levels", num_levels)
        _check_positive("num_convs", num_convs, minimum=0)
        _check_positive("conv_channels", conv_channels)
        self.mask_roi_pool = MultiScaleRoIAlign([str(i) for i in range(num_levels)], roi_size, sampling_ratio)
        self.mask_head = MaskRCNNHeads(in_channels, [conv_channels] * num_convs, dilation=1)
        self.mask_predictor = MaskRCNNPredictor(conv_channels if num_convs else in_channels, conv_channels, num_classes + 1)
        self.num_levels = num_levels
        self.num_classes = num_classes
        self.loss_mask_weight = float(loss_mask_weight)
        self.paste = paste

    def forward(
        self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        """Mask logits ``K x (num_classes + 1) x 2*roi_size x 2*roi_size`` for the boxes of all images, in order.

        ``features`` fine to coarse (only the first ``num_levels`` are used); ``boxes`` per image,
        x1 y1 x2 y2 in the input's pixels; ``image_shapes`` each image's ``(h, w)``.
        """
        levels = {str(i): feature for i, feature in enumerate(list(features.values())[: self.num_levels])}
        return self.mask_predictor(self.mask_head(self.mask_roi_pool(levels, boxes, image_shapes)))

    accepts_padded_targets = True

    def forward_padded(
        self, features: dict[str, torch.Tensor], boxes: torch.Tensor, image_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        """``forward`` for ``B x P x 4`` boxes (a fixed number per image), without a host sync."""
        levels = {str(i): feature for i, feature in enumerate(list(features.values())[: self.num_levels])}
        return self.mask_predictor(self.mask_head(pool_levels(self.mask_roi_pool, levels, boxes, image_shapes)))

    def padded_loss(self, mask_logits: torch.Tensor, positives: PaddedPositives, targets: PaddedTargets) -> torch.Tensor:
        """``loss`` on the box head's fixed-size positives: the mean over the real ones (zero without any).

        Targets as torchvision's ``maskrcnn_loss``: each RoI's matched mask cropped to it with
        ``roi_align`` and resized to the logits' size.
        """
        size = mask_logits.shape[-1]
        # Padding slots point past their image's masks; the spare empty mask at the end catches them.
        mask_index = (targets.first_mask[:, None] + positives.matched).reshape(-1).clamp(max=len(targets.masks) - 1)
        rois = torch.cat([mask_index[:, None].to(positives.boxes.dtype), positives.boxes.reshape(-1, 4)], dim=1)
        wanted = roi_align(targets.masks[:, None].to(rois.dtype), rois, (size, size), 1.0)[:, 0]
        labels = positives.labels.reshape(-1)
        logits = mask_logits[torch.arange(labels.numel(), device=labels.device), labels].float()
        per_roi = F.binary_cross_entropy_with_logits(logits, wanted, reduction="none").mean(dim=(1, 2))
        weight = positives.valid.reshape(-1).float()
        return self.loss_mask_weight * (per_roi * weight).sum() / weight.sum().clamp(min=1)

    def loss(
        self,
        mask_logits: torch.Tensor,
        boxes: list[torch.Tensor],
        gt_masks: list[torch.Tensor],
        gt_labels: list[torch.Tensor],
        matched_idxs: list[torch.Tensor],
    ) -> torch.Tensor:
        """Weighted ``loss_mask``: binary cross-entropy of each RoI's class logits against its target.

        Per image: the RoIs (``boxes``), the ground truth (``gt_masks`` N x H x W in the input's
        pixels, ``gt_labels`` 1-based) and, per RoI, the index of its ground truth. Targets are
        the matched masks cropped to each RoI and resized to the logits' size (torchvision's
        ``maskrcnn_loss``). Zero, not NaN, without RoIs.
        """
        if sum(len(b) for b in boxes) == 0:
            return mask_logits.sum() * 0
        return self.loss_mask_weight * maskrcnn_loss(mask_logits, boxes, gt_masks, gt_labels, matched_idxs)

    def predict(
        self,
        mask_logits: torch.Tensor,
        boxes: list[torch.Tensor],
        labels: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> list[torch.Tensor]:
        """Per image, mask probabilities ``N x 1 x h x w``: each box's own-class mask pasted into the image.

        ``labels`` are 1-based; ``boxes`` and ``image_shapes`` as in ``forward``.
        """
        if len(mask_logits) == 0:
            return [mask_logits.new_zeros((0, 1, h, w)) for h, w in image_shapes]
        probabilities = maskrcnn_inference(mask_logits, labels)
        paste = paste_masks if self.paste == "mmdet" else paste_masks_in_image
        return [paste(p, b, shape) for p, b, shape in zip(probabilities, boxes, image_shapes)]

    def box_masks(self, mask_logits: torch.Tensor, labels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per image, each box's own-class mask probabilities ``N x M x M``, not pasted (what export returns;
        ``detsdk.export.mask_paste`` pastes them as ``self.paste`` does). ``labels`` are 1-based."""
        index = torch.arange(len(mask_logits), device=mask_logits.device)
        probabilities = mask_logits[index, torch.cat(labels)].sigmoid()
        return list(probabilities.split([len(image_labels) for image_labels in labels]))


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Resample ``N x 1 x M x M`` box-relative masks into ``N x 1 x h x w`` image masks, zero outside each box.

    Boxes are continuous coordinates (pixel ``i`` spans ``[i, i + 1]``) and each image pixel
    samples the mask bilinearly at its centre, as MMDetection pastes (``paste = "mmdet"``).
    torchvision's ``paste_masks_in_image`` rounds boxes to integers and adds a pixel, which
    makes masks about a pixel too large: on the 16-64 px shapes that cost 0.012 segm_mAP
    (0.856 instead of 0.868, the same trained model).
    """
    height, width = image_size
    pasted = masks.new_zeros((len(masks), 1, height, width))
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        # Only pixels whose centres can fall inside the box; those outside would sample below 0.5.
        left, top = max(math.floor(x1), 0), max(math.floor(y1), 0)
        right, bottom = min(math.ceil(x2), width), min(math.ceil(y2), height)
        if right <= left or bottom <= top:
            continue
        xs = (torch.arange(left, right, device=masks.device, dtype=masks.dtype) + 0.5 - x1) / max(x2 - x1, 1e-6)
        ys = (torch.arange(top, bottom, device=masks.device, dtype=masks.dtype) + 0.5 - y1) / max(y2 - y1, 1e-6)
        grid = torch.stack(torch.meshgrid(xs * 2 - 1, ys * 2 - 1, indexing="xy"), dim=-1)
        pasted[i, :, top:bottom, left:right] = F.grid_sample(masks[i : i + 1], grid[None], align_corners=False)[0]
    return pasted
