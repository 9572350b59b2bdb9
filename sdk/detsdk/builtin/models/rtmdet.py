"""RTMDet: a real-time one-stage detector (CSPNeXt backbone, CSPNeXtPAFPN neck, ``rtmdet_head``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList

from detsdk.builtin.models.detector_inputs import checked_image_sizes
from detsdk.builtin.models.retinanet import SingleStageDetector, build_head, check_head_strides, check_num_classes
from detsdk.errors import DataError


def padded_targets(targets: list[dict[str, torch.Tensor]], num_classes: int, device: torch.device) -> dict:
    """The batch's targets as padded tensors: ``boxes`` (B, G, 4), ``labels`` (B, G), ``valid`` (B, G).

    ``valid`` marks boxes with area that are not crowd (RTMDet does not train on crowd regions).
    Nothing here waits for the device: no boolean indexing, and labels are range-checked on the
    host when they are there, with a device-side assert otherwise.
    """
    size = max((len(t["labels"]) for t in targets), default=0)
    batch = len(targets)
    boxes = torch.zeros((batch, size, 4), dtype=torch.float32, device=device)
    labels = torch.zeros((batch, size), dtype=torch.int64, device=device)
    valid = torch.zeros((batch, size), dtype=torch.bool, device=device)
    for i, target in enumerate(targets):
        count = len(target["labels"])
        if not count:
            continue
        image_boxes = target["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4)
        image_labels = target["labels"].to(torch.int64)
        if image_labels.device.type == "cpu":
            if image_labels.min() < 0 or image_labels.max() >= num_classes:
                raise DataError(
                    f"target labels must be 0-based and below num_classes={num_classes}; got "
                    f"{int(image_labels.min())}..{int(image_labels.max())}"
                )
        else:
            torch._assert_async(((image_labels >= 0) & (image_labels < num_classes)).all())
        image_labels = image_labels.to(device)
        crowd = target.get("iscrowd")
        keep = (image_boxes[:, 2] > image_boxes[:, 0]) & (image_boxes[:, 3] > image_boxes[:, 1])
        if crowd is not None:
            keep &= ~crowd.to(device=device, dtype=torch.bool).reshape(-1)
        boxes[i, :count] = image_boxes
        labels[i, :count] = image_labels
        valid[i, :count] = keep
    return {"boxes": boxes, "labels": labels, "valid": valid}


class RTMDet(SingleStageDetector):
    """RTMDet (Lyu et al. 2022): ``cspnext`` backbone, ``cspnext_pafpn`` neck and an ``rtmdet_head``.

    Follows the one-stage detector contract (``forward(images, targets)``: losses in
    training, detections in eval). Targets reach the head as padded batch tensors (see
    ``padded_targets``), so the training step has no host synchronisation in the loss path.

    MMDetection 3.x RTMDet checkpoints load through ``runtime.load_from`` and
    ``sdk convert mmdet`` (``bbox_head.`` becomes ``head.``; the stem's first conv is turned
    from BGR to RGB input, so use ``normalize`` with mean ``[123.675, 116.28, 103.53]`` and
    std ``[58.395, 57.12, 57.375]``: MMDetection's BGR statistics in RGB order).
    """

    def forward(
        self,
        images: torch.Tensor,
        targets: list[dict[str, torch.Tensor]] | None = None,
        image_sizes: list[tuple[int, int]] | None = None,
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Losses (``loss_cls``, ``loss_bbox``) in training, per-image detections in eval."""
        image_sizes = checked_image_sizes(type(self).__name__, images, targets, image_sizes, self.training)
        head_targets = padded_targets(targets, self.num_classes, images.device) if self.training else None
        features = self.extract_features(images)
        detections, losses = self.head(ImageList(images, image_sizes), features, head_targets)
        return losses if self.training else detections

    @property
    def anchor_generator(self) -> nn.Module:
        """RTMDet has points, not anchors."""
        raise AttributeError("RTMDet has no anchor generator (its head uses points)")


def build_rtmdet(
    backbone: nn.Module,
    neck: nn.Module | None,
    num_classes: int,
    head: dict[str, Any] = {"type": "rtmdet_head"},  # noqa: B006 (never mutated)
) -> RTMDet:
    """RTMDet from a built backbone and neck and a head table.

    The head gets ``in_channels`` (the neck's ``out_channels``) and ``num_classes``; its
    ``strides`` must be the backbone's (``cspnext`` P5: ``[8, 16, 32]``).

    >>> backbone = CSPNeXt(deepen_factor=0.167, widen_factor=0.375)  # doctest: +SKIP
    >>> neck = CSPNeXtPAFPN(backbone.out_channels, out_channels=96, num_csp_blocks=1)  # doctest: +SKIP
    >>> model = build_rtmdet(backbone, neck, 80, {"type": "rtmdet_head", "feat_channels": 96})  # doctest: +SKIP
    """
    check_num_classes("rtmdet", num_classes)
    dense_head = build_head(backbone, neck, num_classes, head)
    check_head_strides(dense_head, head, backbone, neck)
    return RTMDet(backbone, neck, dense_head, num_classes)
