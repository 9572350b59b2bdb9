"""RTMDet's head (MMDetection's ``RTMDetSepBNHead``): shared convs, separate BN per level, QFL and GIoU losses."""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import batched_nms, generalized_box_iou_loss

from detsdk.builtin.models.csp_layers import conv_module
from detsdk.builtin.models.distance_point_coder import DistancePointBoxCoder
from detsdk.builtin.models.dynamic_soft_label_assigner import DynamicSoftLabelAssigner
from detsdk.builtin.models.quality_focal_loss import quality_focal_loss, quality_targets
from detsdk.builtin.models.retina_head import check_levels
from detsdk.errors import RecipeError

SAFE_BOX = (0.0, 0.0, 1.0, 1.0)  # stands in for background pairs so GIoU never sees a degenerate pair


class RTMDetHead(nn.Module):
    """RTMDet's dense head: per level ``stacked_convs`` 3×3 conv-BN-SiLU towers (conv weights shared
    across levels with ``share_conv``, BatchNorm per level), 1×1 class and distance predictors.

    Args:
        in_channels: the neck's channels (injected); ``num_classes`` foreground classes (injected).
        feat_channels: the towers' channels (tiny 96, s 128, m 192, l 256, x 320).
        stacked_convs: convs per tower.
        strides: the levels' strides, fine to coarse (the neck's).
        share_conv: one set of tower conv weights for all levels.
        exp_on_reg: distances are ``exp(pred) * stride`` (m, l, x) rather than ``pred * stride``.
        pred_kernel_size: kernel of the predictors.
        depthwise: depthwise-separable tower convs.
        topk, soft_center_radius, iou_weight: the dynamic soft label assigner's.
        qfl_beta, loss_cls_weight: quality focal loss.
        loss_bbox_weight: the GIoU loss's weight (2.0).
        nms_pre: per level, at most this many (point, class) candidates above ``score_thr``.
        score_thr, nms_iou, max_per_img: post-processing (class-wise NMS).

    Points sit at ``(x * stride, y * stride)`` (MMDetection's ``MlvlPointGenerator`` with offset
    0). Losses: ``loss_cls`` (QFL over every point and class) and ``loss_bbox`` (GIoU of the
    positives weighted by their IoU), each divided by the batch's sum of positive IoUs (at
    least 1), in fp32 whatever the autocast. Detections: boxes clipped to each image's size.
    Parameter names are MMDetection's (``cls_convs.0.0.conv.weight``, ``rtm_cls.2.bias``).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feat_channels: int = 256,
        stacked_convs: int = 2,
        strides: list[int] = [8, 16, 32],  # noqa: B006 (never mutated)
        share_conv: bool = True,
        exp_on_reg: bool = False,
        pred_kernel_size: int = 1,
        depthwise: bool = False,
        topk: int = 13,
        soft_center_radius: float = 3.0,
        iou_weight: float = 3.0,
        qfl_beta: float = 2.0,
        loss_cls_weight: float = 1.0,
        loss_bbox_weight: float = 2.0,
        nms_pre: int = 30000,
        score_thr: float = 0.001,
        nms_iou: float = 0.65,
        max_per_img: int = 300,
        prior_prob: float = 0.01,
    ):
        super().__init__()
        if not strides or any(not isinstance(s, int) or s < 1 for s in strides):
            raise RecipeError(f"head rtmdet_head: strides must be positive integers, one per level, got {strides!r}")
        if not isinstance(stacked_convs, int) or stacked_convs < 0:
            raise RecipeError(f"head rtmdet_head: stacked_convs must be an integer >= 0, got {stacked_convs!r}")
        self.num_classes = num_classes
        self.strides = list(strides)
        self.exp_on_reg = exp_on_reg
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.rtm_cls = nn.ModuleList()
        self.rtm_reg = nn.ModuleList()
        padding = pred_kernel_size // 2
        for _ in self.strides:
            channels = [in_channels] + [feat_channels] * stacked_convs
            for towers in (self.cls_convs, self.reg_convs):
                convs = (conv_module(channels[i], feat_channels, 3, depthwise=depthwise) for i in range(stacked_convs))
                towers.append(nn.ModuleList(convs))
            self.rtm_cls.append(nn.Conv2d(feat_channels, num_classes, pred_kernel_size, padding=padding))
            self.rtm_reg.append(nn.Conv2d(feat_channels, 4, pred_kernel_size, padding=padding))
        self._init_weights(prior_prob)
        if share_conv and not depthwise:
            for level in range(1, len(self.strides)):
                for i in range(stacked_convs):
                    self.cls_convs[level][i].conv = self.cls_convs[0][i].conv
                    self.reg_convs[level][i].conv = self.reg_convs[0][i].conv
        self.assigner = DynamicSoftLabelAssigner(topk, soft_center_radius, iou_weight)
        self.box_coder = DistancePointBoxCoder()
        self.qfl_beta = qfl_beta
        self.loss_cls_weight = loss_cls_weight
        self.loss_bbox_weight = loss_bbox_weight
        self.nms_pre = nms_pre
        self.score_thr = score_thr
        self.nms_iou = nms_iou
        self.max_per_img = max_per_img

    def _init_weights(self, prior_prob: float) -> None:
        # MMDetection's RTMDetSepBNHead.init_weights: N(0, 0.01) convs, BN at 1, class bias at the prior.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for predictor in self.rtm_cls:
            nn.init.constant_(predictor.bias, -math.log((1 - prior_prob) / prior_prob))

    def priors(self, sizes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
        """``(P, 4)`` points and strides ``x y stride stride`` of every level, row-major, fine to coarse."""
        levels = []
        for (height, width), stride in zip(sizes, self.strides):
            ys, xs = torch.meshgrid(
                torch.arange(height, device=device, dtype=torch.float32) * stride,
                torch.arange(width, device=device, dtype=torch.float32) * stride,
                indexing="ij",
            )
            stride_column = torch.full_like(xs, float(stride))
            levels.append(torch.stack([xs, ys, stride_column, stride_column], dim=-1).reshape(-1, 4))
        return torch.cat(levels)

    def predict_raw(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``(B, P, C)`` and distances in pixels ``(B, P, 4)``, levels concatenated."""
        logits, distances = [], []
        for level, (x, stride) in enumerate(zip(maps, self.strides)):
            cls_feat, reg_feat = x, x
            for layer in self.cls_convs[level]:
                cls_feat = layer(cls_feat)
            for layer in self.reg_convs[level]:
                reg_feat = layer(reg_feat)
            regression = self.rtm_reg[level](reg_feat)
            if self.exp_on_reg:
                regression = regression.float().exp()
            logits.append(self.rtm_cls[level](cls_feat).flatten(2).transpose(1, 2))
            distances.append((regression.float() * stride).flatten(2).transpose(1, 2))
        return torch.cat(logits, 1), torch.cat(distances, 1)

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        targets: dict[str, torch.Tensor] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Losses in training (``targets``: padded ``boxes`` (B, G, 4), ``labels`` (B, G), ``valid`` (B, G));
        per-image ``boxes``, ``scores``, ``labels`` (0-based) in eval."""
        maps = list(features.values())
        check_levels("rtmdet_head", self.strides, maps, "strides")
        logits, distances = self.predict_raw(maps)
        priors = self.priors([tuple(m.shape[-2:]) for m in maps], logits.device)
        if self.training:
            if targets is None:
                raise ValueError("RTMDetHead needs targets in training mode")
            return [], self.loss(priors, logits, distances, targets)
        sizes = [m.shape[-2] * m.shape[-1] for m in maps]
        return self.postprocess(priors, logits, distances, sizes, images.image_sizes), {}

    def loss(
        self, priors: torch.Tensor, logits: torch.Tensor, distances: torch.Tensor, targets: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``loss_cls`` and ``loss_bbox`` over the batch, normalised by the positives' IoU sum."""
        with torch.autocast(logits.device.type, enabled=False):
            logits = logits.float()
            boxes = self.box_coder.decode(priors[:, :2], distances.float())
            gt_boxes, gt_labels, gt_valid = targets["boxes"].float(), targets["labels"], targets["valid"]
            assignment = self.assigner.assign(priors, logits.detach(), boxes.detach(), gt_boxes, gt_labels, gt_valid)
            foreground = assignment.foreground
            index = assignment.gt_index.clamp(min=0)
            labels = torch.where(foreground, gt_labels.long().gather(1, index), -1)
            quality = quality_targets(labels, assignment.iou, self.num_classes)
            normaliser = assignment.iou.sum().clamp(min=1.0)
            loss_cls = quality_focal_loss(logits, quality, self.qfl_beta).sum()
            matched = gt_boxes.gather(1, index[..., None].expand(-1, -1, 4))
            safe = boxes.new_tensor(SAFE_BOX)
            predicted = torch.where(foreground[..., None], boxes, safe)
            matched = torch.where(foreground[..., None], matched, safe)
            giou = generalized_box_iou_loss(predicted.reshape(-1, 4), matched.reshape(-1, 4), reduction="none")
            loss_bbox = (giou * assignment.iou.reshape(-1)).sum()
        return {
            "loss_cls": self.loss_cls_weight * loss_cls / normaliser,
            "loss_bbox": self.loss_bbox_weight * loss_bbox / normaliser,
        }

    @torch.no_grad()
    def postprocess(
        self,
        priors: torch.Tensor,
        logits: torch.Tensor,
        distances: torch.Tensor,
        level_sizes: list[int],
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """MMDetection's ``predict_by_feat``: per level the top ``nms_pre`` scores above ``score_thr``,
        decoding, boxes with area, class-wise NMS at ``nms_iou``, the best ``max_per_img``."""
        results = []
        for image_logits, image_distances, size in zip(logits, distances, image_sizes):
            kept_boxes, kept_scores, kept_labels = [], [], []
            for level_logits, level_distances, level_priors in zip(
                image_logits.split(level_sizes), image_distances.split(level_sizes), priors.split(level_sizes)
            ):
                scores = level_logits.float().sigmoid().flatten()
                candidates = torch.nonzero(scores > self.score_thr).squeeze(1)
                top = scores[candidates].topk(min(self.nms_pre, candidates.numel()))
                candidates = candidates[top.indices]
                points = candidates // self.num_classes
                kept_scores.append(top.values)
                kept_labels.append(candidates % self.num_classes)
                boxes = self.box_coder.decode(level_priors[points, :2], level_distances[points].float(), size)
                kept_boxes.append(boxes)
            boxes, scores, labels = torch.cat(kept_boxes), torch.cat(kept_scores), torch.cat(kept_labels)
            has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, scores, labels = boxes[has_area], scores[has_area], labels[has_area]
            keep = batched_nms(boxes, scores, labels, self.nms_iou)[: self.max_per_img]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return results
