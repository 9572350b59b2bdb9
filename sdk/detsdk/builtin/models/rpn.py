"""Region proposal network head: torchvision's RegionProposalNetwork with crowd regions ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.rpn import RPNHead as RPNConvHead
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import box_area, box_iou, nms

from detsdk.builtin.models.anchors import Float32AnchorGenerator
from detsdk.builtin.models.batched_assign import BACKGROUND, batched_box_iou, gather_rows, inside_crowd, match, sample
from detsdk.builtin.models.padded_targets import PaddedProposals, PaddedTargets
from detsdk.errors import RecipeError

SMOOTH_L1_BETA = 1 / 9  # torchvision's RPN box loss


def ignore_crowd_overlaps(
    boxes: torch.Tensor, labels: torch.Tensor, crowd_boxes: torch.Tensor | None, thresh: float
) -> torch.Tensor:
    """Relabel negatives (``0``) lying mostly inside a crowd region as ignored (``-1``).

    "Mostly inside" means intersection over the box's own area above ``thresh``;
    positives stay positive. torchvision's samplers skip ``-1``, so such anchors or
    proposals are neither foreground nor background. ``thresh >= 1`` turns this off.
    """
    if crowd_boxes is None or crowd_boxes.numel() == 0 or boxes.numel() == 0 or thresh >= 1:
        return labels
    iou = box_iou(boxes, crowd_boxes)
    area = box_area(boxes)[:, None]
    # iou = inter / (a + c - inter)  =>  inter = iou * (a + c) / (1 + iou)
    inter = iou * (area + box_area(crowd_boxes)[None, :]) / (1 + iou)
    inside_crowd = (inter / area.clamp(min=1e-6)).amax(dim=1) > thresh
    labels = labels.clone()
    labels[inside_crowd & (labels == 0)] = -1
    return labels


class RPNHead(RegionProposalNetwork):
    """Region proposal network: anchors, a 3x3 conv head, matching, sampling and NMS (torchvision).

    Args:
        in_channels: channels of every feature map (injected by the detector).
        num_classes: accepted because the detector passes it to every head; proposals are
            class-agnostic, so it is not used.
        anchor_sizes: anchor sizes in pixels, one list per feature level (fine to coarse).
        aspect_ratios: anchor height/width ratios, the same on every level.
        fg_iou_thresh, bg_iou_thresh: IoU at or above which an anchor is foreground, below
            which it is background (in between: ignored).
        batch_size_per_image, positive_fraction: anchors sampled per image for the loss.
        pre_nms_top_n_train, pre_nms_top_n_test: proposals kept per level before NMS.
        post_nms_top_n_train, post_nms_top_n_test: proposals kept per image after NMS.
        nms_thresh: NMS IoU threshold between proposals.
        crowd_ioa_thresh: anchors that would be background but lie inside a crowd region
            (intersection over anchor area above this) are ignored; ``1.0`` turns it off.
        num_convs: 3x3 convs (each followed by ReLU) before the objectness and box layers:
            1 as in torchvision's ``fasterrcnn_resnet50_fpn`` and MMDetection, 2 as in
            ``fasterrcnn_resnet50_fpn_v2``.

    ``forward(images: ImageList, features: dict, targets=None)`` returns
    ``(proposals per image, losses)`` with losses ``loss_rpn_cls`` and ``loss_rpn_bbox``.
    Targets carry ``boxes`` (crowd excluded) and optionally ``crowd_boxes``; or they are
    ``PaddedTargets`` (what the built-in detectors pass in training), and then matching,
    sampling and proposal selection run for the whole batch without a host sync (but the
    one of NMS), and the proposals are ``PaddedProposals``, ``post_nms_top_n_train`` per image.
    """

    accepts_padded_targets = True
    # Training NMS: one call for the whole batch (one host sync; what CUDA runs), or one per image, which
    # does B times less suppression work (NMS is quadratic) and is what the CPU runs: it has no device to
    # wait for. None picks by the boxes' device; count_syncs.py sets False to count the CUDA path on a CPU.
    nms_per_image: bool | None = None

    def __init__(
        self,
        in_channels: int,
        num_classes: int = 1,
        anchor_sizes: list[list[int]] = [[32], [64], [128], [256], [512]],  # noqa: B006
        aspect_ratios: list[float] = [0.5, 1.0, 2.0],  # noqa: B006
        fg_iou_thresh: float = 0.7,
        bg_iou_thresh: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n_train: int = 2000,
        pre_nms_top_n_test: int = 1000,
        post_nms_top_n_train: int = 2000,
        post_nms_top_n_test: int = 1000,
        nms_thresh: float = 0.7,
        crowd_ioa_thresh: float = 0.5,
        num_convs: int = 1,
    ):
        sizes = tuple(tuple(level) if isinstance(level, (list, tuple)) else (level,) for level in anchor_sizes)
        if not sizes or any(not level for level in sizes):
            raise RecipeError(f"head rpn_head: anchor_sizes must be one non-empty list per level, got {anchor_sizes!r}")
        ratios = tuple(float(r) for r in aspect_ratios)
        anchor_generator = Float32AnchorGenerator(sizes=sizes, aspect_ratios=(ratios,) * len(sizes))
        if len({len(level) for level in sizes}) != 1:
            raise RecipeError("head rpn_head: every level of anchor_sizes needs the same number of sizes")
        if isinstance(num_convs, bool) or not isinstance(num_convs, int) or num_convs < 1:
            raise RecipeError(f"head rpn_head: num_convs must be a positive integer, got {num_convs!r}")
        head = RPNConvHead(in_channels, anchor_generator.num_anchors_per_location()[0], conv_depth=num_convs)
        super().__init__(
            anchor_generator,
            head,
            fg_iou_thresh=fg_iou_thresh,
            bg_iou_thresh=bg_iou_thresh,
            batch_size_per_image=batch_size_per_image,
            positive_fraction=positive_fraction,
            pre_nms_top_n={"training": pre_nms_top_n_train, "testing": pre_nms_top_n_test},
            post_nms_top_n={"training": post_nms_top_n_train, "testing": post_nms_top_n_test},
            nms_thresh=nms_thresh,
        )
        self.crowd_ioa_thresh = crowd_ioa_thresh
        self.num_levels = len(sizes)

    def assign_targets_to_anchors(self, anchors, targets):
        """torchvision's matching, then background anchors inside crowd regions become ignored."""
        labels, matched_gt_boxes = super().assign_targets_to_anchors(anchors, targets)
        labels = [
            ignore_crowd_overlaps(a, lab, t.get("crowd_boxes"), self.crowd_ioa_thresh)
            for a, lab, t in zip(anchors, labels, targets)
        ]
        return labels, matched_gt_boxes

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        """torchvision's loss; zero (not NaN) when every anchor is ignored, e.g. an all-crowd image."""
        if not any(bool((lab >= 0).any()) for lab in labels):
            return objectness.sum() * 0, pred_bbox_deltas.sum() * 0
        return super().compute_loss(objectness, pred_bbox_deltas, labels, regression_targets)

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Proposals (x1 y1 x2 y2, per image) and, in training, ``loss_rpn_cls`` and ``loss_rpn_bbox``."""
        if len(features) != self.num_levels:
            raise RecipeError(
                f"head rpn_head: anchor_sizes has {self.num_levels} levels but the detector gives "
                f"{len(features)} feature maps ({', '.join(features)}); set anchor_sizes to {len(features)} lists"
            )
        if isinstance(targets, PaddedTargets):
            return self.forward_padded(images, features, targets)
        proposals, losses = super().forward(images, features, targets)
        if losses:
            losses = {"loss_rpn_cls": losses["loss_objectness"], "loss_rpn_bbox": losses["loss_rpn_box_reg"]}
        return proposals, losses


    def forward_padded(
        self, images: ImageList, features: dict[str, torch.Tensor], targets: PaddedTargets
    ) -> tuple[PaddedProposals, dict[str, torch.Tensor]]:
        """Training on ``PaddedTargets``: torchvision's rules for the whole batch at once.

        Anchors, decoding and box coding in float32 (under autocast too).
        """
        maps = list(features.values())
        objectness, deltas = self.head(maps)
        anchors = self.anchor_generator(images, maps)[0]  # the same for every image of the batch
        per_level = [o[0].numel() for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        batch = targets.num_images
        decoded = self.box_coder.decode_single(deltas.detach().float(), anchors.repeat(batch, 1)).view(batch, -1, 4)
        proposals = self.select_proposals(decoded, objectness.detach().float().view(batch, -1), images, per_level)
        losses = self.padded_loss(objectness.view(batch, -1), deltas.view(batch, -1, 4), anchors, targets)
        return proposals, losses

    def select_proposals(
        self, boxes: torch.Tensor, objectness: torch.Tensor, images: ImageList, per_level: list[int]
    ) -> PaddedProposals:
        """torchvision's ``filter_proposals`` for ``B x A`` scores: top-n per level, clip, drop small and
        low-score boxes, NMS per image and level (one ``nms`` call for the batch), then the best
        ``post_nms_top_n`` per image, padded."""
        batch = boxes.shape[0]
        levels = torch.cat([torch.full((n,), i, dtype=torch.int64, device=boxes.device) for i, n in enumerate(per_level)])
        top = self._get_top_n_idx(objectness, per_level)
        rows = torch.arange(batch, device=boxes.device)[:, None]
        scores = torch.sigmoid(objectness[rows, top])
        levels = levels[top]
        boxes = boxes[rows, top]
        sizes = torch.tensor([[w, h] for h, w in images.image_sizes], dtype=boxes.dtype, device=boxes.device)
        low, high = torch.zeros_like(sizes).repeat(1, 2)[:, None], sizes.repeat(1, 2)[:, None]
        boxes = torch.min(torch.max(boxes, low), high)
        widths, heights = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        keep = (widths >= self.min_size) & (heights >= self.min_size) & (scores >= self.score_thresh)
        # Boxes that are dropped get a group of their own, so they suppress nothing.
        groups = rows * (self.num_levels + 1) + torch.where(keep, levels, self.num_levels)
        offsets = groups.to(boxes.dtype) * (boxes.max() + 1)
        shifted = boxes + offsets[..., None]
        per_image = self.nms_per_image if self.nms_per_image is not None else boxes.device.type == "cpu"
        if per_image:
            count = boxes.shape[1]
            kept = torch.cat([nms(shifted[i], scores[i], self.nms_thresh) + i * count for i in range(batch)])
        else:
            kept = nms(shifted.view(-1, 4), scores.view(-1), self.nms_thresh)
        survived = torch.zeros(keep.numel(), dtype=torch.bool, device=boxes.device).index_fill_(0, kept, True)
        survived = survived.view_as(keep) & keep
        best, index = torch.where(survived, scores, -1.0).topk(min(self.post_nms_top_n(), scores.shape[1]), dim=1)
        return PaddedProposals(boxes=gather_rows(boxes, index), valid=best >= 0)

    def padded_loss(
        self, objectness: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor, targets: PaddedTargets
    ) -> dict[str, torch.Tensor]:
        """``loss_rpn_cls`` (BCE over the sampled anchors) and ``loss_rpn_bbox`` (smooth L1 over the sampled
        positives, divided by the sampled count), as torchvision's; zero when nothing is sampled."""
        batch = targets.num_images
        batch_anchors = anchors[None].expand(batch, -1, -1)
        iou = batched_box_iou(targets.boxes, batch_anchors)
        codes = match(iou, targets.trainable, self.proposal_matcher.high_threshold,
                      self.proposal_matcher.low_threshold, allow_low_quality_matches=True)
        negative = codes == BACKGROUND
        if self.crowd_ioa_thresh < 1:
            negative &= ~inside_crowd(batch_anchors, targets.boxes, targets.crowd, self.crowd_ioa_thresh)
        chosen = sample(codes >= 0, negative, self.fg_bg_sampler.batch_size_per_image,
                        self.fg_bg_sampler.positive_fraction)
        weight = chosen.valid.float()
        count = weight.sum().clamp(min=1)
        positive = chosen.positive
        logits = gather_rows(objectness, chosen.index).float()
        loss_cls = (F.binary_cross_entropy_with_logits(logits, positive.float(), reduction="none") * weight).sum()
        matched = gather_rows(targets.boxes, gather_rows(codes, chosen.index).clamp(min=0))
        wanted = self.box_coder.encode_single(matched.reshape(-1, 4), anchors[chosen.index].reshape(-1, 4))
        predicted = gather_rows(deltas, chosen.index).float().reshape(-1, 4)
        box = F.smooth_l1_loss(predicted, wanted, beta=SMOOTH_L1_BETA, reduction="none").sum(dim=1)
        loss_box = torch.where(positive.reshape(-1), box, 0.0).sum()
        return {"loss_rpn_cls": loss_cls / count, "loss_rpn_bbox": loss_box / count}
