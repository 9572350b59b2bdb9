"""FCOS: a one-stage, anchor-free detector (backbone, optional neck, ``fcos_head``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from detsdk.builtin.models.retinanet import SingleStageDetector, build_head, check_head_strides, check_num_classes


class FCOS(SingleStageDetector):
    """FCOS (Tian et al. 2019): a backbone, an FPN (P3-P7) and an ``fcos_head``.

    A torchvision ``fcos_resnet50_fpn`` state dict loads after renaming ``backbone.body.``
    to ``backbone.`` and ``backbone.fpn.`` to ``neck.fpn.``, given ``resnet`` (depth 50,
    ``out_indices = [1, 2, 3]``) and ``fpn`` with ``extra = "p6p7_on_p5"``.
    """


def build_fcos(
    backbone: nn.Module,
    neck: nn.Module | None,
    num_classes: int,
    head: dict[str, Any] = {"type": "fcos_head"},  # noqa: B006 (never mutated)
) -> FCOS:
    """FCOS from a built backbone and neck and a head table.

    The head is built with ``in_channels`` (the neck's ``out_channels``, or the backbone's
    last ``out_channels`` without a neck) and ``num_classes``. Its ``strides`` must be the
    feature maps' (checked when the neck or backbone reports ``strides``): the default
    ``[8, 16, 32, 64, 128]`` fits ``fpn`` with ``start_level = 1`` and ``extra = "p6p7"``
    (or ``"p6p7_on_p5"``) on ResNet's c2-c5.

    >>> neck = FPN([64, 128, 256, 512], start_level=1, extra="p6p7")  # doctest: +SKIP
    >>> model = build_fcos(ResNet(depth=18), neck, num_classes=3)  # doctest: +SKIP
    """
    check_num_classes("fcos", num_classes)
    dense_head = build_head(backbone, neck, num_classes, head)
    check_head_strides(dense_head, head, neck if neck is not None else backbone, neck,
                       hint=', or for P3-P7 use neck = { type = "fpn", start_level = 1, extra = "p6p7" }')
    return FCOS(backbone, neck, dense_head, num_classes)
