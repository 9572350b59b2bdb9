"""RetinaNet, and the one-stage detector it is: backbone, optional neck, one dense head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList

from detsdk.errors import RecipeError
from detsdk.builtin.models.detector_inputs import checked_image_sizes, extract_features, split_target
from detsdk.builtin.models.padded_targets import accepts_padded_targets, check_target_labels, pad_targets
from detsdk.plugins.build import build_component


class SingleStageDetector(nn.Module):
    """A one-stage detector from parts: ``backbone``, ``neck`` (or ``None``) and a dense ``head``.

    Images arrive already resized, normalized and padded (det-sdk's pipeline does that), so
    there is no GeneralizedRCNNTransform. Labels are 0-based everywhere: the dense heads
    classify with one sigmoid per foreground class, without a background channel.

    Crowd boxes (``iscrowd`` true) are never trained on: they are taken out of the targets and
    passed to the head as ``crowd_boxes``, which ignores (neither positive nor negative)
    anchors or points lying inside them. Boxes with no area are dropped.

    The head owns anchors, matching, losses and post-processing; it is called as
    ``head(ImageList(images, image_sizes), features, targets)`` and returns
    ``(detections, losses)``. Submodules are named as torchvision's: ``backbone``, ``neck``
    (its ``fpn``), ``head`` (``classification_head``, ``regression_head``) and
    ``anchor_generator`` (the head's).
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module | None, head: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.num_classes = num_classes

    @property
    def anchor_generator(self) -> nn.Module:
        """The head's anchor generator (torchvision's RetinaNet and FCOS hold it at the top)."""
        return self.head.anchor_generator

    def extract_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone (and neck) features, fine to coarse; without a neck only the coarsest map."""
        return extract_features(self.backbone, self.neck, images)

    def forward(
        self,
        images: torch.Tensor,
        targets: list[dict[str, torch.Tensor]] | None = None,
        image_sizes: list[tuple[int, int]] | None = None,
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Losses in training, detections in eval.

        Args:
            images: float ``[B, 3, H, W]``, normalized and padded.
            targets: training only; per image ``boxes`` (float ``N x 4``, x1 y1 x2 y2 pixels),
                ``labels`` (int64 ``N``, 0-based) and optionally ``iscrowd`` (bool ``N``).
            image_sizes: each image's ``(h, w)`` before padding; default: ``(H, W)``.

        Returns:
            training: the head's scalar losses (``loss_cls``, ``loss_bbox``, ...);
            eval: per image ``{"boxes": K x 4, "scores": K, "labels": int64 K (0-based)}``,
            boxes clipped to the image size.
        """
        image_sizes = checked_image_sizes(type(self).__name__, images, targets, image_sizes, self.training)
        head_targets = None
        if self.training:
            self.check_targets(targets)  # labels still on the host (TrainStep checks before moving them)
            if accepts_padded_targets(self.head):
                head_targets = pad_targets(targets, label_offset=0)
            else:  # a plugin's head: per-image dicts
                head_targets = [self._head_target(t) for t in targets]
        features = self.extract_features(images)
        detections, losses = self.head(ImageList(images, image_sizes), features, head_targets)
        return losses if self.training else detections

    def check_targets(self, targets: list[dict[str, torch.Tensor]]) -> None:
        """Check a batch's labels on the host, before it goes to the device (``TrainStep`` calls this)."""
        check_target_labels(targets, self.num_classes)

    def _head_target(self, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Split crowd boxes off and drop boxes without area; labels stay 0-based."""
        boxes, labels, keep, crowd_boxes = split_target(target)
        return {"boxes": boxes[keep], "labels": labels[keep], "crowd_boxes": crowd_boxes}


class RetinaNet(SingleStageDetector):
    """RetinaNet (Lin et al. 2017): a backbone, an FPN (P3-P7) and a ``retina_head``.

    A torchvision ``retinanet_resnet50_fpn`` state dict loads after renaming
    ``backbone.body.`` to ``backbone.`` and ``backbone.fpn.`` to ``neck.fpn.``, given
    ``resnet`` (depth 50, ``out_indices = [1, 2, 3]``) and ``fpn`` with
    ``extra = "p6p7_on_p5"`` (``"p6p7"`` for ``retinanet_resnet50_fpn_v2``, whose head
    also needs ``norm = "gn"``, ``loss_bbox = "giou"``).
    """


def check_num_classes(detector: str, num_classes: Any) -> None:
    """A ``RecipeError`` unless ``num_classes`` is a positive integer."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise RecipeError(f"detector {detector}: num_classes must be a positive integer, got {num_classes!r}")


def build_head(backbone: nn.Module, neck: nn.Module | None, num_classes: int, head: dict[str, Any]) -> nn.Module:
    """The ``model.head`` component, given the neck's channels (or the backbone's last)."""
    in_channels = neck.out_channels if neck is not None else backbone.out_channels[-1]
    return build_component("head", head, where="model.head", in_channels=in_channels, num_classes=num_classes)


def check_head_strides(dense_head: nn.Module, head: dict[str, Any], source: nn.Module, neck: nn.Module | None,
                       hint: str = "") -> None:
    """A ``RecipeError`` when the head's ``strides`` are not the feature strides ``source`` (the neck or
    the backbone) reports; without a neck the head sees only the backbone's last map. ``hint`` ends
    the message. Nothing is checked when ``source`` reports no ``strides``."""
    strides = getattr(source, "strides", None)
    if strides is not None and neck is None:
        strides = strides[-1:]
    if strides is not None and list(strides) != list(dense_head.strides):
        raise RecipeError(
            f"model.head: {head.get('type')} strides {list(dense_head.strides)} differ from the "
            f"{'neck' if source is neck else 'backbone'}'s feature strides {list(strides)}; "
            f"set model.head.strides = {list(strides)}{hint}"
        )


def build_retinanet(
    backbone: nn.Module,
    neck: nn.Module | None,
    num_classes: int,
    head: dict[str, Any] = {"type": "retina_head"},  # noqa: B006 (never mutated)
) -> RetinaNet:
    """RetinaNet from a built backbone and neck and a head table.

    The head is built with ``in_channels`` (the neck's ``out_channels``, or the backbone's
    last ``out_channels`` without a neck) and ``num_classes`` (foreground classes). Use a
    five-level neck for the default anchors, e.g. ``fpn`` with ``start_level = 1`` and
    ``extra = "p6p7"`` on ResNet's c2-c5 (P3-P7, strides 8-128).

    >>> neck = FPN([64, 128, 256, 512], start_level=1, extra="p6p7")  # doctest: +SKIP
    >>> model = build_retinanet(ResNet(depth=18), neck, num_classes=3)  # doctest: +SKIP
    """
    check_num_classes("retinanet", num_classes)
    return RetinaNet(backbone, neck, build_head(backbone, neck, num_classes, head), num_classes)
