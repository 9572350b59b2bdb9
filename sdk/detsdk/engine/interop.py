"""Weights from other libraries, renamed to det-sdk's parameter names.

Two layouts are recognised by their keys and converted; a det-sdk state dict
passes through unchanged:

- **torchvision** detection models (``fasterrcnn_resnet50_fpn`` and ``_v2``,
  ``maskrcnn_resnet50_fpn``, ``retinanet_resnet50_fpn``, ``fcos_resnet50_fpn``): keys
  ``backbone.body.*``. det-sdk's detectors are built from torchvision's parts, so only the
  backbone and the neck move (``backbone.body.`` -> ``backbone.``, ``backbone.fpn.`` ->
  ``neck.fpn.``); ``rpn.*``, ``roi_heads.*`` (masks included) and ``head.*`` keep their names.
- **MMDetection 2.x and 3.x** checkpoints (``state_dict`` with ``neck.lateral_convs.*``,
  ``rpn_head.*``, ``roi_head.*``, ``bbox_head.retina_*``, ``bbox_head.conv_centerness``):
  Faster R-CNN, Mask R-CNN, RetinaNet and FCOS with ResNet FPN; 3.x keeps 2.x's module names
  and moves the class names to ``meta.dataset_meta.classes``. See ``from_mmdet`` for the
  mapping, ``detsdk.engine.interop_fcos`` for FCOS's head.

Labels. torchvision's Faster and Mask R-CNN count background as class 0
(``num_classes=91`` for COCO): they are det-sdk models with ``num_classes = 90`` whose label
``L`` is torchvision's ``L + 1`` (COCO category id ``L + 1``). torchvision's RetinaNet and FCOS
have no background class: ``num_classes = 91`` in both, labels equal (label 0 never used).
MMDetection 2.x puts the background score *last*; det-sdk, like torchvision, *first*: the
converter moves it, so MMDetection label ``L`` is det-sdk label ``L``.

Loading converted weights goes through ``checkpoint.load_matching_weights`` like any
``runtime.load_from``, so another ``num_classes`` re-initialises only the class-dependent layers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import attrs
import torch

from detsdk.engine.interop_fcos import fcos_num_classes, from_mmdet_fcos, is_mmdet_fcos

TORCHVISION = "torchvision"
MMDETECTION = "MMDetection"  # 2.x and 3.x checkpoints share their key names
DETSDK = "det-sdk"

_MMDET_MARKERS = (
    "neck.lateral_convs.",
    "neck.fpn_convs.",
    "rpn_head.rpn_",
    "roi_head.",
    "bbox_head.retina_",
    "bbox_head.cls_convs.",
    "bbox_head.conv_centerness.",
    "bbox_head.fcos_centerness.",
)


@attrs.define
class Conversion:
    """Weights renamed to det-sdk's names, with what could not be placed.

    ``weights``: det-sdk name -> tensor. ``unplaced``: source keys with no det-sdk
    counterpart. ``notes``: rearrangements a reader should know about (moved background
    rows, filled rows). ``renamed_from``: det-sdk name -> the source key it came from.
    """

    source_format: str
    weights: dict[str, torch.Tensor]
    unplaced: list[str] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    renamed_from: dict[str, str] = attrs.Factory(dict)

    def source_key(self, name: str) -> str:
        """The source key a det-sdk name came from (itself when it was not renamed)."""
        return self.renamed_from.get(name, name)


def checkpoint_format(weights: Mapping[str, object]) -> str:
    """``TORCHVISION``, ``MMDETECTION`` or ``DETSDK``, told apart by the key names."""
    keys = [k for k in weights if isinstance(k, str)]
    if any(k.startswith("backbone.body.") for k in keys):
        return TORCHVISION
    if any(k.startswith(_MMDET_MARKERS) for k in keys):
        return MMDETECTION
    return DETSDK


def to_detsdk(weights: Mapping[str, torch.Tensor]) -> Conversion:
    """Rename a torchvision or MMDetection 2.x state dict to det-sdk's names (det-sdk's passes through)."""
    found = checkpoint_format(weights)
    if found == TORCHVISION:
        return from_torchvision(weights)
    if found == MMDETECTION:
        from detsdk.engine import interop_rtmdet  # MMDetection 3.x RTMDet (its own module)

        if interop_rtmdet.is_rtmdet(weights):
            return interop_rtmdet.from_mmdet_rtmdet(weights)
        return from_mmdet(weights)
    return Conversion(DETSDK, dict(weights))


# -- torchvision ----------------------------------------------------------------------------
_TORCHVISION_PREFIXES = (("backbone.body.", "backbone."), ("backbone.fpn.", "neck.fpn."))


def from_torchvision(weights: Mapping[str, torch.Tensor]) -> Conversion:
    """A torchvision detection state dict with det-sdk's names: only ``backbone.body``/``backbone.fpn`` move."""
    conversion = Conversion(TORCHVISION, {})
    for key, tensor in weights.items():
        name = key
        for old, new in _TORCHVISION_PREFIXES:
            if key.startswith(old):
                name = new + key[len(old):]
                break
        conversion.weights[name] = tensor
        if name != key:
            conversion.renamed_from[name] = key
    return conversion


# -- MMDetection 2.x ------------------------------------------------------------------------
# ConvModule holds its layers as .conv and .bn / .gn; torchvision's Conv2dNormActivation as .0 and .1.
_CONV_MODULE = {"conv": "0", "bn": "1", "gn": "1"}


def from_mmdet(weights: Mapping[str, torch.Tensor]) -> Conversion:
    """An MMDetection 2.x state dict (ResNet FPN Faster/Mask R-CNN, RetinaNet) with det-sdk's names.

    ================================================  ===================================================
    MMDetection 2.x                                   det-sdk
    ================================================  ===================================================
    ``backbone.*`` (ResNet, ``style='pytorch'``)      ``backbone.*`` (same names)
    ``neck.lateral_convs.i.conv``                     ``neck.fpn.inner_blocks.i.0``
    ``neck.fpn_convs.i.conv`` (i < levels)            ``neck.fpn.layer_blocks.i.0``
    ``neck.fpn_convs.<levels>``, ``<levels + 1>``     ``neck.fpn.extra_blocks.p6``, ``.p7`` (RetinaNet)
    ``rpn_head.rpn_conv``                             ``rpn.head.conv.0.0``
    ``rpn_head.rpn_cls`` / ``rpn_reg``                ``rpn.head.cls_logits`` / ``bbox_pred``
    ``roi_head.bbox_head.shared_fcs.0`` / ``.1``      ``roi_heads.box_head.fc6`` / ``fc7``
    ``roi_head.bbox_head.shared_convs.i`` + fcs       ``roi_heads.box_head.i`` (``convfc_box_head``)
    ``roi_head.bbox_head.fc_cls`` (C+1, bg last)      ``roi_heads.box_predictor.cls_score`` (bg first)
    ``roi_head.bbox_head.fc_reg`` (4C)                ``roi_heads.box_predictor.bbox_pred`` (4(C+1))
    ``roi_head.mask_head.convs.i.conv``               ``roi_heads.mask_head.i.0``
    ``roi_head.mask_head.upsample``                   ``roi_heads.mask_predictor.conv5_mask``
    ``roi_head.mask_head.conv_logits`` (C)            ``roi_heads.mask_predictor.mask_fcn_logits`` (C+1)
    ``bbox_head.cls_convs.i.conv`` / ``reg_convs``    ``head.classification_head.conv.i.0`` / regression
    ``bbox_head.retina_cls`` / ``retina_reg``         ``head.classification_head.cls_logits`` / ``bbox_reg``
    ================================================  ===================================================

    The background rows det-sdk has and MMDetection 2.x does not (box regression, mask
    logits) are filled with zeros: det-sdk never uses them. A class-agnostic ``fc_reg``
    (4 rows) is repeated for every class. Anything else is listed in ``unplaced``.
    """
    conversion = Conversion(MMDETECTION, {})
    lateral_levels = _count_indices(weights, r"neck\.lateral_convs\.(\d+)\.")
    box_convs = _count_indices(weights, r"roi_head\.bbox_head\.shared_convs\.(\d+)\.")
    if is_mmdet_fcos(weights):  # FCOS's head: detsdk.engine.interop_fcos
        from_mmdet_fcos(weights, conversion, lambda key: _mmdet_name(key, lateral_levels, box_convs))
        return conversion
    for key, tensor in weights.items():
        name = _mmdet_name(key, lateral_levels, box_convs)
        if name is None:
            conversion.unplaced.append(key)
            continue
        conversion.weights[name] = tensor
        if name != key:
            conversion.renamed_from[name] = key
    _move_background_first(conversion)
    if "neck.fpn.extra_blocks.p7.weight" in conversion.weights:
        conversion.notes.append(
            "neck.fpn_convs (P6, P7): MMDetection 2.x's RetinaNet makes P7 from P6 without a ReLU "
            "(relu_before_extra_convs=False); det-sdk's fpn, as torchvision's, applies one"
        )
    return conversion


def _count_indices(weights: Mapping[str, torch.Tensor], pattern: str) -> int:
    indices = {int(m.group(1)) for k in weights if (m := re.match(pattern, k))}
    return max(indices) + 1 if indices else 0


def _conv_module(prefix: str, index: str, layer: str, param: str) -> str | None:
    position = _CONV_MODULE.get(layer)
    return None if position is None else f"{prefix}.{index}.{position}.{param}"


def _mmdet_name(key: str, lateral_levels: int, box_convs: int) -> str | None:
    """The det-sdk name of one MMDetection 2.x key, or ``None``."""
    for pattern, rename in _MMDET_RULES:
        match = re.fullmatch(pattern, key)
        if match:
            return rename(match, lateral_levels, box_convs)
    return None


def _fpn_conv(match: re.Match, lateral_levels: int, _box_convs: int) -> str | None:
    index, layer, param = int(match.group(1)), match.group(2), match.group(3)
    if index < lateral_levels:
        return _conv_module("neck.fpn.layer_blocks", str(index), layer, param)
    extra = {lateral_levels: "p6", lateral_levels + 1: "p7"}.get(index)
    # torchvision's LastLevelP6P7 holds plain convolutions, without norm.
    return f"neck.fpn.extra_blocks.{extra}.{param}" if extra and layer == "conv" else None


def _box_fc(match: re.Match, _lateral_levels: int, box_convs: int) -> str | None:
    index, param = int(match.group(1)), match.group(2)
    if box_convs:  # FastRCNNConvFCHead: convs, Flatten, then (Linear, ReLU) pairs
        return f"roi_heads.box_head.{box_convs + 1 + 2 * index}.{param}"
    return {0: f"roi_heads.box_head.fc6.{param}", 1: f"roi_heads.box_head.fc7.{param}"}.get(index)


_Rule = tuple[str, Callable[[re.Match, int, int], "str | None"]]
_MMDET_RULES: list[_Rule] = [
    (r"backbone\.(.+)", lambda m, *_: f"backbone.{m.group(1)}"),
    (r"neck\.lateral_convs\.(\d+)\.(conv|bn|gn)\.(.+)",
     lambda m, *_: _conv_module("neck.fpn.inner_blocks", m.group(1), m.group(2), m.group(3))),
    (r"neck\.fpn_convs\.(\d+)\.(conv|bn|gn)\.(.+)", _fpn_conv),
    (r"rpn_head\.rpn_conv\.(weight|bias)", lambda m, *_: f"rpn.head.conv.0.0.{m.group(1)}"),
    (r"rpn_head\.rpn_conv\.(\d+)\.(conv|bn|gn)\.(.+)",
     lambda m, *_: _conv_module("rpn.head.conv", m.group(1), m.group(2), m.group(3))),
    (r"rpn_head\.rpn_cls\.(weight|bias)", lambda m, *_: f"rpn.head.cls_logits.{m.group(1)}"),
    (r"rpn_head\.rpn_reg\.(weight|bias)", lambda m, *_: f"rpn.head.bbox_pred.{m.group(1)}"),
    (r"roi_head\.bbox_head\.shared_convs\.(\d+)\.(conv|bn|gn)\.(.+)",
     lambda m, *_: _conv_module("roi_heads.box_head", m.group(1), m.group(2), m.group(3))),
    (r"roi_head\.bbox_head\.shared_fcs\.(\d+)\.(weight|bias)", _box_fc),
    (r"roi_head\.bbox_head\.fc_cls\.(weight|bias)", lambda m, *_: f"roi_heads.box_predictor.cls_score.{m.group(1)}"),
    (r"roi_head\.bbox_head\.fc_reg\.(weight|bias)", lambda m, *_: f"roi_heads.box_predictor.bbox_pred.{m.group(1)}"),
    (r"roi_head\.mask_head\.convs\.(\d+)\.(conv|bn|gn)\.(.+)",
     lambda m, *_: _conv_module("roi_heads.mask_head", m.group(1), m.group(2), m.group(3))),
    (r"roi_head\.mask_head\.upsample\.(weight|bias)", lambda m, *_: f"roi_heads.mask_predictor.conv5_mask.{m.group(1)}"),
    (r"roi_head\.mask_head\.conv_logits\.(weight|bias)",
     lambda m, *_: f"roi_heads.mask_predictor.mask_fcn_logits.{m.group(1)}"),
    (r"bbox_head\.cls_convs\.(\d+)\.(conv|bn|gn)\.(.+)",
     lambda m, *_: _conv_module("head.classification_head.conv", m.group(1), m.group(2), m.group(3))),
    (r"bbox_head\.reg_convs\.(\d+)\.(conv|bn|gn)\.(.+)",
     lambda m, *_: _conv_module("head.regression_head.conv", m.group(1), m.group(2), m.group(3))),
    (r"bbox_head\.retina_cls\.(weight|bias)", lambda m, *_: f"head.classification_head.cls_logits.{m.group(1)}"),
    (r"bbox_head\.retina_reg\.(weight|bias)", lambda m, *_: f"head.regression_head.bbox_reg.{m.group(1)}"),
]


def _move_background_first(conversion: Conversion) -> None:
    """MMDetection 2.x: background last in ``fc_cls``, absent in ``fc_reg`` and ``conv_logits``; det-sdk: first."""
    weights = conversion.weights
    cls_name = "roi_heads.box_predictor.cls_score.weight"
    if cls_name not in weights:
        return
    classes = weights[cls_name].shape[0] - 1  # foreground classes
    for param in ("weight", "bias"):
        name = f"roi_heads.box_predictor.cls_score.{param}"
        if name in weights:
            tensor = weights[name]
            weights[name] = torch.cat([tensor[-1:], tensor[:-1]])
    conversion.notes.append(
        f"roi_head.bbox_head.fc_cls: background moved from the last row (MMDetection 2.x) to the first "
        f"({classes} classes + background)"
    )
    for param in ("weight", "bias"):
        name = f"roi_heads.box_predictor.bbox_pred.{param}"
        if name not in weights:
            continue
        tensor = weights[name]
        if tensor.shape[0] == 4:  # reg_class_agnostic: the same deltas for every class
            weights[name] = tensor.repeat(classes + 1, *([1] * (tensor.dim() - 1)))
        elif tensor.shape[0] == 4 * classes:
            weights[name] = torch.cat([tensor.new_zeros((4, *tensor.shape[1:])), tensor])
    if "roi_heads.box_predictor.bbox_pred.weight" in weights:
        conversion.notes.append("roi_head.bbox_head.fc_reg: 4 zero rows added first for background (never used)")
    for param in ("weight", "bias"):
        name = f"roi_heads.mask_predictor.mask_fcn_logits.{param}"
        if name in weights and weights[name].shape[0] == classes:
            tensor = weights[name]
            weights[name] = torch.cat([tensor.new_zeros((1, *tensor.shape[1:])), tensor])
    if "roi_heads.mask_predictor.mask_fcn_logits.weight" in weights:
        conversion.notes.append("roi_head.mask_head.conv_logits: a zero background channel added first (never used)")


def mmdet_num_classes(weights: Mapping[str, torch.Tensor]) -> int | None:
    """Foreground classes of an MMDetection 2.x state dict, from its classifier's shape (``None``: unknown)."""
    if fcos_num_classes(weights) is not None:
        return fcos_num_classes(weights)
    from detsdk.engine.interop_rtmdet import rtmdet_num_classes

    if rtmdet_num_classes(weights) is not None:
        return rtmdet_num_classes(weights)
    fc_cls = weights.get("roi_head.bbox_head.fc_cls.weight")
    if fc_cls is not None:
        return int(fc_cls.shape[0]) - 1
    retina_cls, retina_reg = weights.get("bbox_head.retina_cls.weight"), weights.get("bbox_head.retina_reg.weight")
    if retina_cls is not None and retina_reg is not None and retina_reg.shape[0] % 4 == 0:
        anchors = int(retina_reg.shape[0]) // 4
        if anchors and retina_cls.shape[0] % anchors == 0:
            return int(retina_cls.shape[0]) // anchors
    return None


# -- whole files ----------------------------------------------------------------------------
@attrs.define
class ConversionReport:
    """What ``convert_checkpoint`` wrote and everything it could not carry over."""

    out: str
    source_format: str
    detector: str
    num_classes: int
    placed: int
    unplaced: list[str]  # source keys with no det-sdk counterpart, or whose shape does not fit
    unfilled: list[str]  # det-sdk weights no source key filled: they keep their initialisation
    notes: list[str]


# Why a converted MMDetection model scores close to, not exactly as, it did in MMDetection.
MMDET_NUMERICS_NOTE = (
    "det-sdk runs torchvision's ops: RoIAlign with aligned=False and sampling_ratio 2 (MMDetection 2.x: "
    "aligned=True, sampling_ratio 0; set box_head.sampling_ratio = 0 to close part of the gap) and anchors "
    "rounded to whole pixels, so detections are close to MMDetection's, not identical"
)


def convert_checkpoint(
    checkpoint: str,
    recipe: str,
    out: str,
    overrides: tuple[str, ...] = (),
    expected_format: str = MMDETECTION,
    strict: bool = False,
) -> ConversionReport:
    """Convert a checkpoint to a det-sdk checkpoint for the detector ``recipe`` describes; write it atomically.

    The output holds the full model state (weights no source key filled keep their
    initialisation and are listed in the report), the resolved recipe with the class count,
    and class names (MMDetection's ``meta.CLASSES`` when present), so ``sdk predict``,
    ``detsdk.load_detector`` and ``runtime.load_from`` take it as it is. ``num_classes`` is the
    recipe's when it is a number, else the checkpoint's. With ``strict``, anything unplaced or
    unfilled is an error and nothing is written. The input is read with ``weights_only=True``.
    """
    from detsdk import __version__
    from detsdk.engine.build import build_model
    from detsdk.engine.checkpoint import load_checkpoint, model_state_of, save_checkpoint
    from detsdk.errors import CheckpointError
    from detsdk.recipe import dump_recipe, load_recipe, validate_recipe, with_defaults

    try:
        state = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        if "refused" not in str(exc):
            raise
        raise CheckpointError(
            f"{exc}. det-sdk never falls back to unsafe loading. If you trust the file, re-save just its "
            "weights where MMDetection is installed (ckpt = torch.load(path, weights_only=False); "
            "torch.save({'state_dict': ckpt['state_dict'], 'meta': {'CLASSES': ckpt['meta']['CLASSES']}}, "
            "'weights.pth'); MMDetection 3.x: ckpt['meta']['dataset_meta']['classes']) and convert that file"
        ) from None
    weights = model_state_of(state)
    found = checkpoint_format(weights)
    if found != expected_format:
        sample = ", ".join(list(weights)[:3])
        raise CheckpointError(
            f"{checkpoint}: not an {expected_format} checkpoint (it looks like {found}: keys such as {sample})"
        )
    conversion = to_detsdk(weights)
    loaded = load_recipe(recipe, overrides)
    validate_recipe(loaded)
    config = with_defaults(loaded.data)
    meta = state.get("meta") if isinstance(state.get("meta"), dict) else {}
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    names = [str(c) for c in meta.get("CLASSES") or dataset_meta.get("classes") or []]  # 2.x, 3.x
    wanted = config["model"].get("num_classes", "auto")
    num_classes = wanted if isinstance(wanted, int) else (mmdet_num_classes(weights) or len(names))
    if not num_classes:
        raise CheckpointError(f"{checkpoint}: cannot tell its number of classes; set model.num_classes in {recipe}")
    config["model"]["num_classes"] = num_classes
    model = build_model(config["model"], num_classes, for_inference=True)
    own = model.state_dict()

    placed: dict[str, torch.Tensor] = {}
    unplaced = list(conversion.unplaced)
    for name, tensor in conversion.weights.items():
        if name in own and own[name].shape == tensor.shape:
            placed[name] = tensor.to(own[name].dtype)
        elif name in own:
            unplaced.append(
                f"{conversion.source_key(name)} (as {name}: {tuple(tensor.shape)} after conversion, "
                f"the model has {tuple(own[name].shape)})"
            )
        elif not name.endswith("num_batches_tracked"):  # BatchNorm's counter: FrozenBatchNorm2d has none
            source = conversion.source_key(name)
            unplaced.append(source if source == name else f"{source} (as {name}: not in the model)")
    unfilled = [name for name in own if name not in placed]
    notes = list(conversion.notes) + ([MMDET_NUMERICS_NOTE] if conversion.source_format == MMDETECTION else [])
    report = ConversionReport(
        out=str(out), source_format=conversion.source_format, detector=str(config["model"]["type"]), num_classes=num_classes,
        placed=len(placed), unplaced=unplaced, unfilled=unfilled, notes=notes,
    )
    if strict and (unplaced or unfilled):
        raise CheckpointError(
            f"{checkpoint}: --strict: {len(unplaced)} weights not placed ({', '.join(unplaced[:3])}"
            f"{', ...' if len(unplaced) > 3 else ''}), {len(unfilled)} det-sdk weights unfilled "
            f"({', '.join(unfilled[:3])}{', ...' if len(unfilled) > 3 else ''}); nothing written"
        )
    classes = names if len(names) == num_classes else [f"class_{i}" for i in range(num_classes)]
    save_checkpoint(
        out,
        {
            "model": {**own, **placed},
            "recipe": dump_recipe(config),
            "classes": classes,
            "cat_ids": None,
            "version": __version__,
            "converted_from": {"format": conversion.source_format, "file": str(checkpoint)},
        },
    )
    return report
