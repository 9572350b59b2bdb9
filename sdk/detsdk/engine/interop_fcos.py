"""MMDetection's FCOS checkpoints (2.x and 3.x key names) renamed to det-sdk's ``fcos`` parameters.

================================================  ==================================================
MMDetection (``FCOSHead``)                        det-sdk (torchvision's FCOS head)
================================================  ==================================================
``backbone.*``, ``neck.*``                        as for the other MMDetection detectors
``bbox_head.cls_convs.i.conv``                    ``head.classification_head.conv.<3i>``
``bbox_head.cls_convs.i.gn``                      ``head.classification_head.conv.<3i + 1>``
``bbox_head.reg_convs.i.conv`` / ``.gn``          ``head.regression_head.conv.<3i>`` / ``<3i + 1>``
``bbox_head.conv_cls`` (early: ``fcos_cls``)      ``head.classification_head.cls_logits``
``bbox_head.conv_reg`` (``fcos_reg``)             ``head.regression_head.bbox_reg``
``bbox_head.conv_centerness`` (``fcos_centerness``) ``head.regression_head.bbox_ctrness``
``bbox_head.scales.i.scale``                      none: listed as not placed, with their values
================================================  ==================================================

The towers of MMDetection's GN heads have no conv bias (``conv_bias='auto'``); det-sdk's do:
they are set to zero, which computes the same function. Pytorch- and caffe-style ResNets have
the same parameter names, so both load (caffe style strides differently: see the notes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

FCOS_MARKERS = ("bbox_head.conv_centerness.", "bbox_head.fcos_centerness.")
_TOWER = re.compile(r"bbox_head\.(cls|reg)_convs\.(\d+)\.(conv|gn|bn)\.(weight|bias)")
_PREDICTORS = {
    "conv_cls": "head.classification_head.cls_logits", "fcos_cls": "head.classification_head.cls_logits",
    "conv_reg": "head.regression_head.bbox_reg", "fcos_reg": "head.regression_head.bbox_reg",
    "conv_centerness": "head.regression_head.bbox_ctrness", "fcos_centerness": "head.regression_head.bbox_ctrness",
}
_TOWER_NAMES = {"cls": "head.classification_head.conv", "reg": "head.regression_head.conv"}


def is_mmdet_fcos(weights: Mapping[str, object]) -> bool:
    """Whether an MMDetection state dict holds an FCOS head (its centerness branch)."""
    return any(isinstance(k, str) and k.startswith(FCOS_MARKERS) for k in weights)


def fcos_head_name(key: str) -> str | None:
    """The det-sdk name of one MMDetection FCOS head key (``None``: not an FCOS head key or no counterpart)."""
    tower = _TOWER.fullmatch(key)
    if tower:
        branch, index, layer, param = tower.group(1), int(tower.group(2)), tower.group(3), tower.group(4)
        position = 3 * index + (0 if layer == "conv" else 1)  # conv, norm (GroupNorm or Identity), ReLU
        return f"{_TOWER_NAMES[branch]}.{position}.{param}"
    predictor = re.fullmatch(r"bbox_head\.(\w+)\.(weight|bias)", key)
    if predictor and predictor.group(1) in _PREDICTORS:
        return f"{_PREDICTORS[predictor.group(1)]}.{predictor.group(2)}"
    return None


def fcos_num_classes(weights: Mapping[str, torch.Tensor]) -> int | None:
    """Foreground classes of an MMDetection FCOS state dict, from its classifier (``None``: not FCOS)."""
    for key in ("bbox_head.conv_cls.weight", "bbox_head.fcos_cls.weight"):
        if key in weights:
            return int(weights[key].shape[0])
    return None


def from_mmdet_fcos(weights: Mapping[str, torch.Tensor], conversion, other_name) -> None:
    """Fill ``conversion`` (an ``interop.Conversion``) from an MMDetection FCOS state dict.

    ``other_name(key)`` renames backbone and neck keys as for every MMDetection detector.
    """
    scales = []
    for key, tensor in weights.items():
        name = fcos_head_name(key) if key.startswith("bbox_head.") else other_name(key)
        if name is None:
            conversion.unplaced.append(key)
            if re.fullmatch(r"bbox_head\.scales\.\d+\.scale", key):
                scales.append(f"{float(tensor.reshape(-1)[0]):.3g}")
            continue
        conversion.weights[name] = tensor
        if name != key:
            conversion.renamed_from[name] = key
    zeroed = 0
    for prefix in _TOWER_NAMES.values():
        for key, tensor in list(conversion.weights.items()):
            match = re.fullmatch(re.escape(prefix) + r"\.(\d+)\.weight", key)
            bias = f"{prefix}.{match.group(1)}.bias" if match else ""
            if match and int(match.group(1)) % 3 == 0 and bias not in conversion.weights:
                conversion.weights[bias] = tensor.new_zeros(tensor.shape[0])
                zeroed += 1
    if zeroed:
        conversion.notes.append(f"bbox_head.cls_convs / reg_convs: no conv bias (GroupNorm follows); det-sdk's "
                                f"{zeroed} tower conv biases set to zero (the same function)")
    if scales:
        conversion.notes.append(
            f"bbox_head.scales ({', '.join(scales)}): MMDetection's FCOS multiplies each level's box output by a "
            "learned scale; det-sdk's (torchvision's) has none, so boxes differ unless these are close to 1"
        )
    conversion.notes.append(
        "FCOS: det-sdk's head (torchvision's) predicts box distances in strides with ReLU and centerness on the "
        "box branch (MMDetection's norm_on_bbox=True, centerness_on_reg=True); checkpoints trained otherwise "
        "load, but score differently"
    )
