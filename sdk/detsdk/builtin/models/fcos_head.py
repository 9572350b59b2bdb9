"""FCOS dense head: torchvision's FCOS towers, point assignment and post-processing, with losses to choose."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.fcos import FCOS, FCOSClassificationHead, FCOSRegressionHead
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_area, generalized_box_iou_loss, sigmoid_focal_loss

from detsdk.builtin.models.anchors import Float32AnchorGenerator
from detsdk.builtin.models.giou import giou_loss
from detsdk.builtin.models.batched_assign import BACKGROUND, gather_rows, inside_crowd
from detsdk.builtin.models.padded_targets import PaddedTargets
from detsdk.builtin.models.retina_head import check_choice, check_levels, ignore_background_in_crowd, norm_layer
from detsdk.errors import RecipeError

CLS_LOSSES = ("focal",)
BBOX_LOSSES = ("giou", "iou")
IGNORED = det_utils.Matcher.BETWEEN_THRESHOLDS  # -2, as RetinaNet's matcher marks ignored anchors


def iou_loss(boxes: torch.Tensor, targets: torch.Tensor, eps: float = 1e-6, reduction: str = "sum") -> torch.Tensor:
    """``-log(IoU)`` of aligned box pairs (UnitBox, the original FCOS box loss), summed or (``"none"``) each."""
    top_left = torch.max(boxes[:, :2], targets[:, :2])
    bottom_right = torch.min(boxes[:, 2:], targets[:, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    union = box_area(boxes) + box_area(targets) - intersection
    # eps on both sides rather than a clamp, which would stop the gradient of a near-empty box.
    loss = -torch.log((intersection + eps) / (union + eps))
    return loss if reduction == "none" else loss.sum()


class FCOSHead(nn.Module):
    """FCOS's dense head (Tian et al. 2019) on torchvision's FCOS towers.

    One point per location and level (torchvision represents it as a square "anchor" whose
    side is the level's stride); a point is positive for a box when it lies inside it, within
    ``center_sampling_radius`` strides of its center, and the box's largest side distance fits
    the level's range (``4 * stride`` to ``8 * stride``; open below on the first level and
    above on the last); among several boxes it takes the smallest. The box branch predicts
    ReLU'd distances to the four sides (in strides) and a centerness logit. Post-processing is
    torchvision's own (score ``sqrt(sigmoid(cls) * sigmoid(centerness))``, per level threshold
    and top-k, decoding, clipping, class-wise NMS), so a converted torchvision FCOS gives the
    same detections. Classification is sigmoid over ``num_classes`` channels, labels 0-based.

    Args:
        in_channels: channels of every feature map (injected by the detector).
        num_classes: foreground classes (injected).
        num_convs: 3x3 convs in each tower.
        norm: ``"gn"`` (GroupNorm, 32 groups; torchvision and MMDetection) or ``"none"``.
        strides: the stride of each feature level, fine to coarse (default P3-P7); the
            detector checks them against the neck's.
        center_sampling_radius: positives lie within this many strides of a box's center.
        loss_cls: ``"focal"`` (sigmoid focal loss with ``focal_alpha``, ``focal_gamma``).
        loss_bbox: ``"giou"`` (torchvision) or ``"iou"`` (``-log IoU``, the FCOS paper).
        loss_bbox_weight: factor on the box loss.
        prior_prob: initial foreground probability of the classifier (bias init).
        score_thresh, topk_candidates: per level, keep scores above the threshold, then the
            best ``topk_candidates`` (torchvision's defaults).
        nms_thresh, detections_per_img: class-wise NMS, then the best per image.
        crowd_ioa_thresh: points that would be background but whose stride-sized square lies
            inside a crowd region (intersection over its area above this) are ignored;
            ``1.0`` turns it off.

    Losses, as torchvision's: ``loss_cls`` (focal, over all points but ignored ones),
    ``loss_bbox`` and ``loss_centerness`` (binary cross-entropy) over positives, each divided
    by the batch's positive count. ``forward(images: ImageList, features: dict, targets=None)``
    returns ``([], losses)`` in training and ``(detections, {})`` in eval, per image ``boxes``
    (clipped to ``images.image_sizes``), ``scores`` and 0-based ``labels``. Parameters are named
    as torchvision's (``classification_head.conv.0.weight``, ``regression_head.bbox_ctrness``).

    With ``PaddedTargets`` (the built-in detectors in training) the batch is assigned and its
    losses computed at once, with weights instead of filtering, in float32: no host sync.
    """

    accepts_padded_targets = True

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_convs: int = 4,
        norm: str = "gn",
        strides: list[int] = [8, 16, 32, 64, 128],  # noqa: B006 (never mutated; shown as the recipe default)
        center_sampling_radius: float = 1.5,
        loss_cls: str = "focal",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        loss_bbox: str = "giou",
        loss_bbox_weight: float = 1.0,
        prior_prob: float = 0.01,
        score_thresh: float = 0.2,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        crowd_ioa_thresh: float = 0.5,
    ):
        super().__init__()
        name = "fcos_head"
        check_choice(name, "loss_cls", loss_cls, CLS_LOSSES)
        check_choice(name, "loss_bbox", loss_bbox, BBOX_LOSSES)
        norm_factory = norm_layer(name, norm, in_channels) or (lambda channels: nn.Identity())
        if not strides or any(not isinstance(s, int) or s < 1 for s in strides):
            raise RecipeError(f"head {name}: strides must be positive integers, one per level, got {strides!r}")
        if not isinstance(num_convs, int) or num_convs < 0:
            raise RecipeError(f"head {name}: num_convs must be a non-negative integer, got {num_convs!r}")
        if not 0 < prior_prob < 1:
            raise RecipeError(f"head {name}: prior_prob must be between 0 and 1, got {prior_prob!r}")
        # torchvision's FCOS anchors: one square per location, its side the level's stride.
        self.anchor_generator = Float32AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        self.classification_head = FCOSClassificationHead(
            in_channels, 1, num_classes, num_convs, prior_probability=prior_prob, norm_layer=norm_factory
        )
        self.regression_head = FCOSRegressionHead(in_channels, 1, num_convs, norm_layer=norm_factory)
        self.box_coder = det_utils.BoxLinearCoder(normalize_by_size=True)
        self.num_classes = num_classes
        self.strides = list(strides)
        self.center_sampling_radius = center_sampling_radius
        self.loss_cls = loss_cls
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.loss_bbox = loss_bbox
        self.loss_bbox_weight = loss_bbox_weight
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates
        self.crowd_ioa_thresh = crowd_ioa_thresh

    def match(
        self, anchors: list[torch.Tensor], targets: list[dict[str, torch.Tensor]], points_per_level: list[int]
    ) -> list[torch.Tensor]:
        """Per image and point: the assigned box index, ``-1`` background or ``-2`` ignored (crowd)."""
        matched_idxs = []
        for squares, target in zip(anchors, targets):
            matched = torch.full((len(squares),), -1, dtype=torch.int64, device=squares.device)
            boxes = target["boxes"]
            if boxes.numel():
                centers = (squares[:, :2] + squares[:, 2:]) / 2
                stride = squares[:, 2] - squares[:, 0]
                near_center = (centers[:, None] - (boxes[None, :, :2] + boxes[None, :, 2:]) / 2).abs().amax(dim=2)
                fits = near_center < self.center_sampling_radius * stride[:, None]
                # Distances from each point to the four sides of each box: left, top, right, bottom.
                sides = torch.cat([centers[:, None] - boxes[None, :, :2], boxes[None, :, 2:] - centers[:, None]], dim=2)
                fits &= sides.amin(dim=2) > 0
                lower, upper = stride * 4, stride * 8
                lower[: points_per_level[0]] = 0
                upper[-points_per_level[-1] :] = float("inf")
                reach = sides.amax(dim=2)
                fits &= (reach > lower[:, None]) & (reach < upper[:, None])
                # Among the boxes a point fits, the smallest wins (torchvision's 1e8 - area trick).
                priority = fits.to(torch.float32) * (1e8 - box_area(boxes)[None, :])
                best, index = priority.max(dim=1)
                matched = torch.where(best < 1e-5, matched, index)
            crowd_boxes = target.get("crowd_boxes")
            matched_idxs.append(ignore_background_in_crowd(squares, matched, crowd_boxes, self.crowd_ioa_thresh))
        return matched_idxs

    def compute_loss(
        self,
        targets: list[dict[str, torch.Tensor]],
        head_outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        matched_idxs: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """``loss_cls``, ``loss_bbox``, ``loss_centerness``, each over the batch's positives (at least 1)."""
        matched = torch.stack(matched_idxs)
        foreground = matched >= 0
        # The positives' ground truth, image after image: the order of the batch mask ``foreground``.
        gt_labels = torch.cat([t["labels"][m[m >= 0]] for t, m in zip(targets, matched_idxs)])
        gt_boxes = torch.cat([t["boxes"][m[m >= 0]] for t, m in zip(targets, matched_idxs)])
        num_foreground = max(1, len(gt_labels))
        logits = head_outputs["cls_logits"]
        wanted = torch.zeros_like(logits)
        wanted[foreground, gt_labels] = 1.0
        valid = matched != IGNORED
        loss_cls = sigmoid_focal_loss(
            logits[valid], wanted[valid], alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum"
        )
        squares = torch.stack(anchors)[foreground]
        predicted = self.box_coder.decode(head_outputs["bbox_regression"][foreground], squares)
        if self.loss_bbox == "giou":
            loss_bbox = generalized_box_iou_loss(predicted, gt_boxes, reduction="sum")
        else:
            loss_bbox = iou_loss(predicted, gt_boxes)
        distances = self.box_coder.encode(squares, gt_boxes)
        left_right, top_bottom = distances[:, [0, 2]], distances[:, [1, 3]]
        centerness = torch.sqrt(
            (left_right.amin(dim=1) / left_right.amax(dim=1)) * (top_bottom.amin(dim=1) / top_bottom.amax(dim=1))
        )
        loss_centerness = F.binary_cross_entropy_with_logits(
            head_outputs["bbox_ctrness"][foreground].squeeze(dim=1), centerness, reduction="sum"
        )
        return {
            "loss_cls": loss_cls / num_foreground,
            "loss_bbox": self.loss_bbox_weight * loss_bbox / num_foreground,
            "loss_centerness": loss_centerness / num_foreground,
        }

    def padded_match(self, squares: torch.Tensor, targets: PaddedTargets, points_per_level: list[int]) -> torch.Tensor:
        """``match`` for the whole batch: ``B x A`` codes (box index, ``-1`` background, ``-2`` ignored)."""
        boxes = targets.boxes  # B x M x 4
        centers = (squares[:, :2] + squares[:, 2:]) / 2
        stride = squares[:, 2] - squares[:, 0]
        box_centers = (boxes[..., :2] + boxes[..., 2:]) / 2
        near_center = (centers[None, :, None] - box_centers[:, None]).abs().amax(dim=3)
        fits = near_center < self.center_sampling_radius * stride[None, :, None]
        sides = torch.cat([centers[None, :, None] - boxes[:, None, :, :2], boxes[:, None, :, 2:] - centers[None, :, None]],
                          dim=3)
        fits &= sides.amin(dim=3) > 0
        lower, upper = stride * 4, stride * 8
        lower[: points_per_level[0]] = 0
        upper[-points_per_level[-1] :] = float("inf")
        reach = sides.amax(dim=3)
        fits &= (reach > lower[None, :, None]) & (reach < upper[None, :, None]) & targets.trainable[:, None, :]
        area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
        best, index = (fits.to(torch.float32) * (1e8 - area)[:, None, :]).max(dim=2)
        codes = torch.where(best < 1e-5, BACKGROUND, index)
        if self.crowd_ioa_thresh < 1:
            batch_squares = squares[None].expand(targets.num_images, -1, -1)
            crowded = inside_crowd(batch_squares, boxes, targets.crowd, self.crowd_ioa_thresh)
            codes = torch.where((codes == BACKGROUND) & crowded, IGNORED, codes)
        return codes

    def padded_loss(
        self, targets: PaddedTargets, head_outputs: dict[str, torch.Tensor], squares: torch.Tensor,
        points_per_level: list[int],
    ) -> dict[str, torch.Tensor]:
        """``compute_loss`` for the whole batch (each term over the batch's positives), in float32."""
        codes = self.padded_match(squares, targets, points_per_level)
        foreground = codes >= 0
        count = foreground.sum().clamp(min=1)
        matched = codes.clamp(min=0)
        logits = head_outputs["cls_logits"].float()
        classes = torch.arange(logits.shape[-1], device=logits.device)
        wanted = ((gather_rows(targets.labels, matched)[..., None] == classes) & foreground[..., None]).to(logits.dtype)
        focal = sigmoid_focal_loss(logits, wanted, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none")
        loss_cls = torch.where((codes != IGNORED)[..., None], focal, 0.0).sum()
        flat_squares = squares.repeat(targets.num_images, 1)
        positive = foreground.reshape(-1)
        # Points without a box get their own square as ground truth: every formula stays finite.
        gt_boxes = torch.where(positive[:, None], gather_rows(targets.boxes, matched).reshape(-1, 4), flat_squares)
        predicted = self.box_coder.decode(head_outputs["bbox_regression"].float().reshape(-1, 4), flat_squares)
        if self.loss_bbox == "giou":
            box = giou_loss(predicted, gt_boxes)
        else:
            box = iou_loss(predicted, gt_boxes, reduction="none")
        distances = self.box_coder.encode(flat_squares, gt_boxes)
        left_right, top_bottom = distances[:, [0, 2]], distances[:, [1, 3]]
        centerness = torch.sqrt(
            (left_right.amin(dim=1) / left_right.amax(dim=1)) * (top_bottom.amin(dim=1) / top_bottom.amax(dim=1))
        )
        ctr = F.binary_cross_entropy_with_logits(
            head_outputs["bbox_ctrness"].float().reshape(-1), centerness, reduction="none"
        )
        return {
            "loss_cls": loss_cls / count,
            "loss_bbox": self.loss_bbox_weight * torch.where(positive, box, 0.0).sum() / count,
            "loss_centerness": torch.where(positive, ctr, 0.0).sum() / count,
        }

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Losses in training; per-image ``boxes``, ``scores``, ``labels`` (0-based) in eval."""
        maps = list(features.values())
        check_levels("fcos_head", self.strides, maps, "strides")
        bbox_regression, bbox_ctrness = self.regression_head(maps)
        head_outputs = {
            "cls_logits": self.classification_head(maps),
            "bbox_regression": bbox_regression,
            "bbox_ctrness": bbox_ctrness,
        }
        anchors = self.anchor_generator(images, maps)
        points_per_level = [m.shape[-2] * m.shape[-1] for m in maps]
        if self.training:
            if targets is None:
                raise ValueError("FCOSHead needs targets in training mode")
            if isinstance(targets, PaddedTargets):
                return [], self.padded_loss(targets, head_outputs, anchors[0], points_per_level)
            matched_idxs = self.match(anchors, targets, points_per_level)
            return [], self.compute_loss(targets, head_outputs, anchors, matched_idxs)
        # Split per level as torchvision's FCOS.forward does, then its own post-processing.
        split_outputs = {k: list(v.split(points_per_level, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(a.split(points_per_level)) for a in anchors]
        return FCOS.postprocess_detections(self, split_outputs, split_anchors, images.image_sizes), {}
