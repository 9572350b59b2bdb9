"""RetinaNet dense head: torchvision's RetinaNet head, anchor matching and post-processing, with losses to choose."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead
from torchvision.ops import box_iou, sigmoid_focal_loss
from torchvision.ops.misc import Conv2dNormActivation

from detsdk.builtin.models.anchors import Float32AnchorGenerator
from detsdk.builtin.models.giou import giou_loss
from detsdk.builtin.models.batched_assign import BACKGROUND, IGNORED, batched_box_iou, gather_rows, inside_crowd, match
from detsdk.builtin.models.padded_targets import PaddedTargets
from detsdk.builtin.models.rpn import ignore_crowd_overlaps
from detsdk.errors import RecipeError, suggest

CLS_LOSSES = ("focal",)
BBOX_LOSSES = ("l1", "smooth_l1", "giou")
NORMS = ("none", "gn")
GN_GROUPS = 32
SMOOTH_L1_BETA = 1 / 9  # MMDetection's RetinaNet (0.11); torchvision's helper would use 1.0
# torchvision's anchors: octave base scale 4 (32 px at stride 8), 3 scales per octave, truncated to integers.
ANCHOR_SIZES = [[x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))] for x in (32, 64, 128, 256, 512)]


def check_choice(head: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise a ``RecipeError`` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise RecipeError(
            f"head {head}: unknown {key} '{value}'{suggest(str(value), choices)}; valid: {', '.join(choices)}"
        )


def norm_layer(head: str, norm: str, channels: int) -> Callable[[int], nn.Module] | None:
    """The head's normalization layer factory: ``None`` for ``"none"``, GroupNorm (32 groups) for ``"gn"``."""
    check_choice(head, "norm", norm, NORMS)
    if norm == "none":
        return None
    if channels % GN_GROUPS:
        raise RecipeError(
            f"head {head}: norm 'gn' uses {GN_GROUPS} groups, so in_channels (the neck's out_channels) must be "
            f"a multiple of {GN_GROUPS}, got {channels}; change the neck's out_channels or set norm = \"none\""
        )
    return partial(nn.GroupNorm, GN_GROUPS)


def ignore_background_in_crowd(
    anchors: torch.Tensor, matched_idxs: torch.Tensor, crowd_boxes: torch.Tensor | None, thresh: float
) -> torch.Tensor:
    """Mark background anchors (``-1``) lying mostly inside a crowd region as ignored (``-2``).

    Matcher codes: ``>= 0`` matched ground truth, ``-1`` background, ``-2`` ignored (between
    thresholds). "Mostly inside": intersection over the anchor's area above ``thresh``.
    """
    labels = ignore_crowd_overlaps(anchors, (matched_idxs >= 0).to(torch.int64), crowd_boxes, thresh)
    return torch.where(labels < 0, torch.full_like(matched_idxs, det_utils.Matcher.BETWEEN_THRESHOLDS), matched_idxs)


def check_levels(head: str, sizes: list, features: list[torch.Tensor], key: str) -> None:
    """A ``RecipeError`` when a head configured for ``len(sizes)`` levels gets another number of maps."""
    if len(features) != len(sizes):
        raise RecipeError(
            f"head {head}: {key} has {len(sizes)} levels but the detector gives {len(features)} feature maps; "
            f"set {key} to {len(features)} entries or change the neck (num_outs, start_level, extra)"
        )


def _conv_tower(channels: int, num_convs: int, norm: Callable[[int], nn.Module] | None) -> nn.Sequential:
    """torchvision's RetinaNet tower with ``num_convs`` 3x3 convs (its own has 4), initialized alike."""
    tower = nn.Sequential(*(Conv2dNormActivation(channels, channels, norm_layer=norm) for _ in range(num_convs)))
    for layer in tower.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, std=0.01)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return tower


class RetinaHead(RetinaNetHead):
    """RetinaNet's dense head (Lin et al. 2017) on torchvision's ``RetinaNetHead``.

    Classification and box towers on every pyramid level, anchors (``AnchorGenerator``),
    IoU matching (``Matcher``, low-quality matches allowed), ``BoxCoder`` deltas with unit
    weights and torchvision's own post-processing (per level: score threshold, top-k,
    decoding, clipping; then class-wise NMS), so a converted torchvision RetinaNet gives the
    same detections. Classification is sigmoid over ``num_classes`` channels, labels 0-based
    (no background channel).

    Args:
        in_channels: channels of every feature map (injected by the detector).
        num_classes: foreground classes (injected).
        num_convs: 3x3 convs in each tower (torchvision and MMDetection: 4).
        norm: ``"none"`` (torchvision's ``retinanet_resnet50_fpn``) or ``"gn"`` (GroupNorm, 32
            groups; ``retinanet_resnet50_fpn_v2``).
        anchor_sizes: anchor sizes in pixels, one list per level, fine to coarse; default
            torchvision's ``(x, x*2**(1/3), x*2**(2/3))`` truncated, for x = 32 .. 512 (P3-P7).
        aspect_ratios: anchor height/width ratios, the same on every level.
        fg_iou_thresh, bg_iou_thresh: IoU at or above which an anchor is foreground, below which
            it is background (in between: ignored); each box also keeps its best anchors.
        loss_cls: ``"focal"`` (sigmoid focal loss with ``focal_alpha``, ``focal_gamma``).
        loss_bbox: ``"l1"`` (on deltas, torchvision and MMDetection), ``"smooth_l1"`` (on deltas,
            beta 1/9) or ``"giou"`` (on decoded boxes, torchvision's v2).
        loss_bbox_weight: factor on the box loss.
        prior_prob: initial foreground probability of the classifier (bias init).
        score_thresh, topk_candidates: per level, keep scores above the threshold, then the
            best ``topk_candidates``.
        nms_thresh, detections_per_img: class-wise NMS, then the best per image (torchvision's
            RetinaNet defaults to 300; MMDetection and this head to 100).
        crowd_ioa_thresh: anchors that would be background but lie inside a crowd region
            (intersection over anchor area above this) are ignored; ``1.0`` turns it off.

    ``forward(images: ImageList, features: dict, targets=None)`` returns ``([], losses)`` in
    training (``loss_cls``, ``loss_bbox``) and ``(detections, {})`` in eval, per image
    ``boxes`` (clipped to ``images.image_sizes``), ``scores`` and 0-based ``labels``. Targets
    carry ``boxes``, 0-based ``labels`` (crowd excluded) and optionally ``crowd_boxes``.
    Parameters are named as torchvision's (``classification_head.conv.0.0.weight``,
    ``classification_head.cls_logits``, ``regression_head.bbox_reg``).

    With ``PaddedTargets`` (the built-in detectors in training) the batch is matched and its
    losses computed at once, with weights instead of filtering, in float32: no host sync.
    """

    accepts_padded_targets = True

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_convs: int = 4,
        norm: str = "none",
        anchor_sizes: list[list[float]] = ANCHOR_SIZES,  # noqa: B006 (never mutated; shown as the recipe default)
        aspect_ratios: list[float] = [0.5, 1.0, 2.0],  # noqa: B006
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.4,
        loss_cls: str = "focal",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        loss_bbox: str = "l1",
        loss_bbox_weight: float = 1.0,
        prior_prob: float = 0.01,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        crowd_ioa_thresh: float = 0.5,
    ):
        name = "retina_head"
        check_choice(name, "loss_cls", loss_cls, CLS_LOSSES)
        check_choice(name, "loss_bbox", loss_bbox, BBOX_LOSSES)
        norm_factory = norm_layer(name, norm, in_channels)
        sizes = tuple(tuple(level) if isinstance(level, (list, tuple)) else (level,) for level in anchor_sizes)
        if not sizes or any(not level for level in sizes) or len({len(level) for level in sizes}) != 1:
            raise RecipeError(
                f"head {name}: anchor_sizes must be one list per level, each with the same number of sizes, "
                f"got {anchor_sizes!r}"
            )
        if not aspect_ratios:
            raise RecipeError(f"head {name}: aspect_ratios must not be empty")
        if not isinstance(num_convs, int) or num_convs < 0:
            raise RecipeError(f"head {name}: num_convs must be a non-negative integer, got {num_convs!r}")
        if not 0 < prior_prob < 1:
            raise RecipeError(f"head {name}: prior_prob must be between 0 and 1, got {prior_prob!r}")
        ratios = tuple(float(r) for r in aspect_ratios)
        anchor_generator = Float32AnchorGenerator(sizes=sizes, aspect_ratios=(ratios,) * len(sizes))
        num_anchors = anchor_generator.num_anchors_per_location()[0]
        super().__init__(in_channels, num_anchors, num_classes, norm_layer=norm_factory)
        nn.init.constant_(self.classification_head.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))
        if num_convs != 4:  # torchvision's towers have 4 convs
            self.classification_head.conv = _conv_tower(in_channels, num_convs, norm_factory)
            self.regression_head.conv = _conv_tower(in_channels, num_convs, norm_factory)
        self.anchor_generator = anchor_generator
        self.proposal_matcher = det_utils.Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.box_coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.num_classes = num_classes
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
        self.anchor_sizes = [list(level) for level in sizes]

    def match(self, anchors: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
        """Per image and anchor: the matched box index, ``-1`` background or ``-2`` ignored."""
        matched_idxs = []
        for anchors_per_image, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:
                matched = torch.full((len(anchors_per_image),), -1, dtype=torch.int64, device=anchors_per_image.device)
            else:
                matched = self.proposal_matcher(box_iou(target["boxes"], anchors_per_image))
            crowd = target.get("crowd_boxes")
            matched_idxs.append(ignore_background_in_crowd(anchors_per_image, matched, crowd, self.crowd_ioa_thresh))
        return matched_idxs

    def compute_loss(
        self,
        targets: list[dict[str, torch.Tensor]],
        head_outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        matched_idxs: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """``loss_cls`` and ``loss_bbox``, normalized as torchvision's.

        Per image, summed over anchors (ignored ones left out of ``loss_cls``, only positives
        in ``loss_bbox``) and divided by its positive count (at least 1); then the mean over images.
        """
        cls_losses, box_losses = [], []
        for target, logits, deltas, anchors_per_image, matched in zip(
            targets, head_outputs["cls_logits"], head_outputs["bbox_regression"], anchors, matched_idxs
        ):
            foreground = torch.where(matched >= 0)[0]
            num_foreground = max(1, foreground.numel())
            wanted = torch.zeros_like(logits)
            wanted[foreground, target["labels"][matched[foreground]]] = 1.0
            valid = matched != det_utils.Matcher.BETWEEN_THRESHOLDS
            focal = sigmoid_focal_loss(
                logits[valid], wanted[valid], alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum"
            )
            cls_losses.append(focal / num_foreground)
            box_loss = det_utils._box_loss(
                self.loss_bbox,
                self.box_coder,
                anchors_per_image[foreground],
                target["boxes"][matched[foreground]],
                deltas[foreground],
                cnf={"beta": SMOOTH_L1_BETA},
            )
            box_losses.append(box_loss / num_foreground)
        count = max(1, len(targets))
        return {"loss_cls": sum(cls_losses) / count, "loss_bbox": self.loss_bbox_weight * sum(box_losses) / count}

    def padded_match(self, anchors: torch.Tensor, targets: PaddedTargets) -> torch.Tensor:
        """``match`` for the whole batch: ``B x A`` codes (box index, ``-1`` background, ``-2`` ignored)."""
        batch_anchors = anchors[None].expand(targets.num_images, -1, -1)
        codes = match(batched_box_iou(targets.boxes, batch_anchors), targets.trainable,
                      self.proposal_matcher.high_threshold, self.proposal_matcher.low_threshold,
                      allow_low_quality_matches=True)
        if self.crowd_ioa_thresh < 1:
            crowded = inside_crowd(batch_anchors, targets.boxes, targets.crowd, self.crowd_ioa_thresh)
            codes = torch.where((codes == BACKGROUND) & crowded, IGNORED, codes)
        return codes

    def padded_loss(
        self, targets: PaddedTargets, head_outputs: dict[str, torch.Tensor], anchors: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``compute_loss`` for the whole batch (the same per-image normalisation), in float32."""
        codes = self.padded_match(anchors, targets)
        foreground = codes >= 0
        matched = codes.clamp(min=0)
        logits = head_outputs["cls_logits"].float()
        classes = torch.arange(logits.shape[-1], device=logits.device)
        wanted = ((gather_rows(targets.labels, matched)[..., None] == classes) & foreground[..., None]).to(logits.dtype)
        focal = sigmoid_focal_loss(logits, wanted, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none")
        focal = torch.where((codes != IGNORED)[..., None], focal, 0.0).sum(dim=(1, 2))
        per_image = foreground.sum(dim=1).clamp(min=1)
        batch_anchors = anchors.repeat(targets.num_images, 1)
        gt_boxes = gather_rows(targets.boxes, matched).reshape(-1, 4)
        deltas = head_outputs["bbox_regression"].float().reshape(-1, 4)
        if self.loss_bbox == "giou":
            box = giou_loss(self.box_coder.decode_single(deltas, batch_anchors), gt_boxes)
        else:
            wanted_deltas = self.box_coder.encode_single(gt_boxes, batch_anchors)
            if self.loss_bbox == "smooth_l1":
                box = F.smooth_l1_loss(deltas, wanted_deltas, beta=SMOOTH_L1_BETA, reduction="none").sum(dim=1)
            else:
                box = F.l1_loss(deltas, wanted_deltas, reduction="none").sum(dim=1)
        box = torch.where(foreground.reshape(-1), box, 0.0).view_as(codes).sum(dim=1)
        count = max(1, targets.num_images)
        return {"loss_cls": (focal / per_image).sum() / count,
                "loss_bbox": self.loss_bbox_weight * (box / per_image).sum() / count}

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Losses in training; per-image ``boxes``, ``scores``, ``labels`` (0-based) in eval."""
        maps = list(features.values())
        check_levels("retina_head", self.anchor_sizes, maps, "anchor_sizes")
        head_outputs = super().forward(maps)
        anchors = self.anchor_generator(images, maps)
        if self.training:
            if targets is None:
                raise ValueError("RetinaHead needs targets in training mode")
            if isinstance(targets, PaddedTargets):
                return [], self.padded_loss(targets, head_outputs, anchors[0])
            return [], self.compute_loss(targets, head_outputs, anchors, self.match(anchors, targets))
        # Split per level as torchvision's RetinaNet.forward does, then its own post-processing.
        per_level = [m.shape[-2] * m.shape[-1] for m in maps]
        anchors_per_location = head_outputs["cls_logits"].shape[1] // sum(per_level)
        per_level = [count * anchors_per_location for count in per_level]
        split_outputs = {k: list(v.split(per_level, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(a.split(per_level)) for a in anchors]
        return RetinaNet.postprocess_detections(self, split_outputs, split_anchors, images.image_sizes), {}
