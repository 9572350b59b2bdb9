"""RoI box head: torchvision's RoIHeads with a configurable loss and crowd regions ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign, generalized_box_iou_loss

from detsdk.builtin.models.giou import giou_loss
from detsdk.builtin.models.batched_assign import BACKGROUND, IGNORED, batched_box_iou, gather_rows, inside_crowd, match, sample
from detsdk.builtin.models.level_roi_align import pool_levels
from detsdk.builtin.models.padded_targets import PAD_BOX, PaddedPositives, PaddedProposals, PaddedTargets
from detsdk.builtin.models.rpn import ignore_crowd_overlaps
from detsdk.errors import RecipeError, suggest

CLS_LOSSES = ("cross_entropy",)
BBOX_LOSSES = ("smooth_l1", "l1", "giou")
SMOOTH_L1_BETA = 1 / 9  # torchvision's choice, so converted torchvision models train alike


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RecipeError(
            f"head shared2fc_box_head: unknown {key} '{value}'{suggest(str(value), choices)}; "
            f"valid: {', '.join(choices)}"
        )


class Shared2FCBoxHead(RoIHeads):
    """Second stage of Faster R-CNN: RoIAlign, two shared FC layers, class and box predictors.

    Built on torchvision's ``RoIHeads`` (matching, sampling, box coding, post-processing),
    ``MultiScaleRoIAlign``, ``TwoMLPHead`` and ``FastRCNNPredictor``; only the loss is
    computed here, so that it can be chosen.

    Args:
        in_channels: channels of every feature map (injected by the detector).
        num_classes: foreground classes (injected); the predictor has one more, background.
        roi_size: RoIAlign output size (``roi_size`` x ``roi_size``).
        sampling_ratio: RoIAlign sampling points per bin.
        num_levels: pool from this many of the finest feature maps (4: p2-p5 of a 5-level FPN,
            as MMDetection); the level of an RoI follows the FPN paper (224 px -> the 4th).
        fc_channels: width of the two shared FC layers.
        fg_iou_thresh, bg_iou_thresh: proposal IoU for foreground / below which background.
        batch_size_per_image, positive_fraction: proposals sampled per image for the loss.
        score_thresh, nms_thresh, detections_per_img: inference post-processing (per-class NMS).
        loss_cls: ``"cross_entropy"``.
        loss_bbox: ``"smooth_l1"`` (beta 1/9, on encoded deltas), ``"l1"`` (on deltas) or
            ``"giou"`` (on decoded boxes; MMDetection weights it 10.0).
        loss_bbox_weight: factor on the box loss.
        bbox_reg_weights: box coder weights (x, y, w, h).
        crowd_ioa_thresh: proposals that would be background but lie inside a crowd region
            (intersection over proposal area above this) are ignored; ``1.0`` turns it off.

    Crowd handling: targets carry non-crowd ``boxes``/``labels`` and, optionally,
    ``crowd_boxes``; crowd regions are never positives and never added as proposals.

    ``forward(features, proposals, image_shapes, targets=None)`` returns ``(positives, losses)``
    in training (``loss_cls``, ``loss_bbox``; per image the positive sampled proposals as
    ``boxes`` and their ``labels``, which a mask head trains on) and ``(detections, {})`` in
    eval, in torchvision's label convention (``0`` is background; the detector shifts to 0-based).
    With ``PaddedTargets`` and ``PaddedProposals`` (the built-in detectors in training) the
    whole batch is matched and sampled at once, ``batch_size_per_image`` RoIs per image, and
    the positives come back as ``PaddedPositives``: no host sync.
    """

    accepts_padded_targets = True

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        roi_size: int = 7,
        sampling_ratio: int = 2,
        num_levels: int = 4,
        fc_channels: int = 1024,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        loss_cls: str = "cross_entropy",
        loss_bbox: str = "smooth_l1",
        loss_bbox_weight: float = 1.0,
        bbox_reg_weights: list[float] = [10.0, 10.0, 5.0, 5.0],  # noqa: B006
        crowd_ioa_thresh: float = 0.5,
    ):
        _check_choice("loss_cls", loss_cls, CLS_LOSSES)
        _check_choice("loss_bbox", loss_bbox, BBOX_LOSSES)
        if len(bbox_reg_weights) != 4:
            raise RecipeError(f"head shared2fc_box_head: bbox_reg_weights needs 4 numbers, got {bbox_reg_weights!r}")
        if num_levels < 1:
            raise RecipeError(f"head shared2fc_box_head: num_levels must be at least 1, got {num_levels!r}")
        super().__init__(
            box_roi_pool=MultiScaleRoIAlign([str(i) for i in range(num_levels)], roi_size, sampling_ratio),
            box_head=TwoMLPHead(in_channels * roi_size**2, fc_channels),
            box_predictor=FastRCNNPredictor(fc_channels, num_classes + 1),
            fg_iou_thresh=fg_iou_thresh,
            bg_iou_thresh=bg_iou_thresh,
            batch_size_per_image=batch_size_per_image,
            positive_fraction=positive_fraction,
            bbox_reg_weights=tuple(float(w) for w in bbox_reg_weights),
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
        )
        self.num_levels = num_levels
        self.loss_cls = loss_cls
        self.loss_bbox = loss_bbox
        self.loss_bbox_weight = loss_bbox_weight
        self.crowd_ioa_thresh = crowd_ioa_thresh

    def sample_proposals(self, proposals: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]):
        """Match proposals (plus the ground truth) to targets and sample them for the loss.

        Returns sampled proposals, their labels (``0`` background), regression targets and
        matched ground-truth boxes, one tensor per image.
        """
        self.check_targets(targets)
        dtype, device = proposals[0].dtype, proposals[0].device
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        gt_labels = [t["labels"] for t in targets]
        proposals = self.add_gt_proposals(proposals, gt_boxes)
        matched_idxs, labels = self.assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        labels = [
            ignore_crowd_overlaps(p, lab, t.get("crowd_boxes"), self.crowd_ioa_thresh)
            for p, lab, t in zip(proposals, labels, targets)
        ]
        sampled = self.subsample(labels)
        matched_gt_boxes = []
        for i, keep in enumerate(sampled):
            proposals[i], labels[i] = proposals[i][keep], labels[i][keep]
            boxes = gt_boxes[i] if gt_boxes[i].numel() else torch.zeros((1, 4), dtype=dtype, device=device)
            matched_gt_boxes.append(boxes[matched_idxs[i][keep]])
        regression_targets = self.box_coder.encode(matched_gt_boxes, proposals)
        return proposals, labels, regression_targets, matched_gt_boxes

    def compute_loss(
        self,
        class_logits: torch.Tensor,
        box_regression: torch.Tensor,
        proposals: list[torch.Tensor],
        labels: list[torch.Tensor],
        regression_targets: list[torch.Tensor],
        matched_gt_boxes: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """``loss_cls`` over sampled proposals; ``loss_bbox`` over positives, averaged over all sampled."""
        labels_all = torch.cat(labels)
        if labels_all.numel() == 0:  # every proposal ignored (an all-crowd batch): zero, not NaN
            zero = class_logits.sum() * 0 + box_regression.sum() * 0
            return {"loss_cls": zero, "loss_bbox": zero.clone()}
        loss_cls = F.cross_entropy(class_logits, labels_all)
        positive = torch.where(labels_all > 0)[0]
        # Class-specific regression: take each positive's deltas for its own class.
        deltas = box_regression.reshape(labels_all.numel(), -1, 4)[positive, labels_all[positive]]
        if self.loss_bbox == "giou":
            predicted = self.box_coder.decode_single(deltas, torch.cat(proposals)[positive])
            box_loss = generalized_box_iou_loss(predicted, torch.cat(matched_gt_boxes)[positive], reduction="sum")
        else:
            wanted = torch.cat(regression_targets)[positive]
            if self.loss_bbox == "smooth_l1":
                box_loss = F.smooth_l1_loss(deltas, wanted, beta=SMOOTH_L1_BETA, reduction="sum")
            else:
                box_loss = F.l1_loss(deltas, wanted, reduction="sum")
        return {"loss_cls": loss_cls, "loss_bbox": self.loss_bbox_weight * box_loss / labels_all.numel()}

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Positive samples and losses in training; per-image ``boxes``, ``scores``, ``labels`` (1-based) in eval."""
        levels = {str(i): feature for i, feature in enumerate(list(features.values())[: self.num_levels])}
        if isinstance(targets, PaddedTargets):
            return self.forward_padded(levels, proposals, image_shapes, targets)
        if self.training:
            if targets is None:
                raise ValueError("Shared2FCBoxHead needs targets in training mode")
            proposals, labels, regression_targets, matched_gt_boxes = self.sample_proposals(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(levels, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            losses = self.compute_loss(
                class_logits, box_regression, proposals, labels, regression_targets, matched_gt_boxes
            )
            # The positive samples, so that a mask head trains on the same RoIs (Mask R-CNN).
            positives = [{"boxes": p[lab > 0], "labels": lab[lab > 0]} for p, lab in zip(proposals, labels)]
            return positives, losses
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        detections = [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in zip(boxes, scores, labels)]
        return detections, {}

    def forward_padded(
        self, levels: dict[str, torch.Tensor], proposals: PaddedProposals, image_shapes: list[tuple[int, int]],
        targets: PaddedTargets,
    ) -> tuple[PaddedPositives, dict[str, torch.Tensor]]:
        """Training on the whole batch: torchvision's matching (ground truth added as proposals),
        balanced sampling and losses, with fixed-size samples and weights instead of filtering."""
        boxes = torch.cat([proposals.boxes, targets.boxes], dim=1)
        real = torch.cat([proposals.valid, targets.trainable], dim=1)
        codes = match(batched_box_iou(targets.boxes, boxes), targets.trainable, self.proposal_matcher.high_threshold,
                      self.proposal_matcher.low_threshold, allow_low_quality_matches=False)
        codes = torch.where(real, codes, IGNORED)
        negative = codes == BACKGROUND
        if self.crowd_ioa_thresh < 1:
            negative &= ~inside_crowd(boxes, targets.boxes, targets.crowd, self.crowd_ioa_thresh)
        chosen = sample(codes >= 0, negative, self.fg_bg_sampler.batch_size_per_image,
                        self.fg_bg_sampler.positive_fraction)
        pad = torch.tensor(PAD_BOX, dtype=boxes.dtype, device=boxes.device)
        rois = torch.where(chosen.valid[..., None], gather_rows(boxes, chosen.index), pad)
        matched = gather_rows(codes, chosen.index).clamp(min=0)
        labels = torch.where(chosen.positive, gather_rows(targets.labels, matched), 0)
        box_features = self.box_head(pool_levels(self.box_roi_pool, levels, rois, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        losses = self.padded_loss(class_logits, box_regression, rois, labels, chosen.valid, chosen.positive,
                                  gather_rows(targets.boxes, matched))
        slots = chosen.num_positive_slots
        positives = PaddedPositives(boxes=rois[:, :slots], labels=labels[:, :slots],
                                    valid=chosen.positive[:, :slots], matched=matched[:, :slots])
        return positives, losses

    def padded_loss(
        self, class_logits: torch.Tensor, box_regression: torch.Tensor, rois: torch.Tensor, labels: torch.Tensor,
        valid: torch.Tensor, positive: torch.Tensor, matched_boxes: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """``compute_loss`` on fixed-size samples: ``valid`` marks the real ones, ``positive`` the foreground."""
        weight = valid.reshape(-1).float()
        count = weight.sum().clamp(min=1)
        flat_labels = labels.reshape(-1)
        loss_cls = (F.cross_entropy(class_logits.float(), flat_labels, reduction="none") * weight).sum() / count
        rows = torch.arange(flat_labels.numel(), device=flat_labels.device)
        deltas = box_regression.reshape(flat_labels.numel(), -1, 4)[rows, flat_labels].float()
        flat_rois, flat_matched = rois.reshape(-1, 4), matched_boxes.reshape(-1, 4)
        if self.loss_bbox == "giou":
            predicted = self.box_coder.decode_single(deltas, flat_rois)
            box_loss = giou_loss(predicted, flat_matched)
        else:
            wanted = self.box_coder.encode_single(flat_matched, flat_rois)
            loss = F.smooth_l1_loss if self.loss_bbox == "smooth_l1" else F.l1_loss
            options = {"beta": SMOOTH_L1_BETA} if self.loss_bbox == "smooth_l1" else {}
            box_loss = loss(deltas, wanted, reduction="none", **options).sum(dim=1)
        box_loss = torch.where(positive.reshape(-1), box_loss, 0.0).sum()
        return {"loss_cls": loss_cls, "loss_bbox": self.loss_bbox_weight * box_loss / count}


CONV_NORMS = ("none", "bn", "gn")
GN_GROUPS = 32


class ConvFCBoxHead(Shared2FCBoxHead):
    """Second stage with a convolutional RoI head: ``num_convs`` 3x3 convs (norm, ReLU), then FC layers.

    torchvision's ``FastRCNNConvFCHead`` (``fasterrcnn_resnet50_fpn_v2``: 4 convs of 256 with
    BatchNorm, one FC of 1024) and MMDetection's ``Shared4Conv1FCBBoxHead`` (with GroupNorm);
    matching, sampling, losses and post-processing are ``Shared2FCBoxHead``'s.

    Args:
        num_convs: 3x3 convolutions on the pooled RoI features (each with norm and ReLU).
        conv_channels: their output channels.
        num_fcs: fully connected layers after them (each with ReLU), at least one.
        fc_channels: their width; the class and box predictors read the last one.
        norm: ``"bn"`` (BatchNorm2d, torchvision's v2), ``"gn"`` (GroupNorm, 32 groups,
            MMDetection's 4conv1fc) or ``"none"`` (a conv bias instead).

    The other arguments are ``Shared2FCBoxHead``'s. Parameters are named as torchvision's
    (``box_head.0.0.weight`` the first conv, ``box_head.0.1.*`` its norm, ``box_head.<num_convs
    + 1>.weight`` the first FC), so a ``fasterrcnn_resnet50_fpn_v2`` state dict loads as it is.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_convs: int = 4,
        conv_channels: int = 256,
        num_fcs: int = 1,
        fc_channels: int = 1024,
        norm: str = "bn",
        roi_size: int = 7,
        sampling_ratio: int = 2,
        num_levels: int = 4,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        loss_cls: str = "cross_entropy",
        loss_bbox: str = "smooth_l1",
        loss_bbox_weight: float = 1.0,
        bbox_reg_weights: list[float] = [10.0, 10.0, 5.0, 5.0],  # noqa: B006
        crowd_ioa_thresh: float = 0.5,
    ):
        name = "head convfc_box_head"
        for key, value, minimum in (("num_convs", num_convs, 0), ("conv_channels", conv_channels, 1),
                                    ("num_fcs", num_fcs, 1), ("fc_channels", fc_channels, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise RecipeError(f"{name}: {key} must be an integer >= {minimum}, got {value!r}")
        if norm not in CONV_NORMS:
            raise RecipeError(
                f"{name}: unknown norm '{norm}'{suggest(str(norm), CONV_NORMS)}; valid: {', '.join(CONV_NORMS)}"
            )
        if norm == "gn" and conv_channels % GN_GROUPS:
            raise RecipeError(f"{name}: norm 'gn' needs conv_channels divisible by {GN_GROUPS}, got {conv_channels}")
        try:
            super().__init__(
                in_channels, num_classes, roi_size=roi_size, sampling_ratio=sampling_ratio, num_levels=num_levels,
                fc_channels=fc_channels, fg_iou_thresh=fg_iou_thresh, bg_iou_thresh=bg_iou_thresh,
                batch_size_per_image=batch_size_per_image, positive_fraction=positive_fraction,
                score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections_per_img,
                loss_cls=loss_cls, loss_bbox=loss_bbox, loss_bbox_weight=loss_bbox_weight,
                bbox_reg_weights=bbox_reg_weights, crowd_ioa_thresh=crowd_ioa_thresh,
            )
        except RecipeError as exc:  # the shared checks name the base head
            raise RecipeError(str(exc).replace("head shared2fc_box_head", name)) from None
        norm_layer = {
            "none": None,
            "bn": torch.nn.BatchNorm2d,
            "gn": lambda channels: torch.nn.GroupNorm(GN_GROUPS, channels),
        }[norm]
        # Replaces the two-FC head the base built; the predictor already reads fc_channels.
        self.box_head = FastRCNNConvFCHead(
            (in_channels, roi_size, roi_size), [conv_channels] * num_convs, [fc_channels] * num_fcs, norm_layer=norm_layer
        )
