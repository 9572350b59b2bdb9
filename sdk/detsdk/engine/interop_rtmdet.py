"""MMDetection 3.x RTMDet checkpoints (``{"state_dict", "meta"}``) with det-sdk's names.

det-sdk's ``cspnext``, ``cspnext_pafpn`` and ``rtmdet_head`` keep MMDetection's module
names, so the mapping is short:

=====================================  =====================================
MMDetection 3.x (RTMDet)               det-sdk ``rtmdet``
=====================================  =====================================
``backbone.*`` (CSPNeXt)               ``backbone.*``
``neck.*`` (CSPNeXtPAFPN)              ``neck.*``
``bbox_head.*`` (RTMDetSepBNHead)      ``head.*``
``data_preprocessor.*``                dropped (det-sdk normalises in the pipeline)
=====================================  =====================================

MMDetection's RTMDet takes BGR images (``bgr_to_rgb=False``) normalised with mean
``[103.53, 116.28, 123.675]`` and std ``[57.375, 57.12, 58.395]``; det-sdk's images are RGB.
The stem's first convolution gets its input channels reversed, so the converted model takes
RGB normalised with the same statistics in RGB order: mean ``[123.675, 116.28, 103.53]``,
std ``[58.395, 57.12, 57.375]`` (what the RTMDet recipes use).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from detsdk.engine.interop import Conversion

MMDETECTION_RTMDET = "MMDetection 3.x RTMDet"
STEM_CONV = "backbone.stem.0.conv.weight"
BGR_NOTE = (
    "backbone.stem.0.conv: input channels reversed from MMDetection's BGR to det-sdk's RGB; normalize with "
    "mean [123.675, 116.28, 103.53] and std [58.395, 57.12, 57.375] (MMDetection's BGR statistics in RGB order)"
)
_PREFIXES = (("backbone.", "backbone."), ("neck.", "neck."), ("bbox_head.", "head."))


def is_rtmdet(weights: Mapping[str, object]) -> bool:
    """Whether a state dict is MMDetection's RTMDet (its head's ``rtm_cls`` predictors)."""
    return any(isinstance(k, str) and k.startswith("bbox_head.rtm_cls.") for k in weights)


def rtmdet_num_classes(weights: Mapping[str, torch.Tensor]) -> int | None:
    """Foreground classes of an RTMDet state dict (rows of its first class predictor)."""
    predictor = weights.get("bbox_head.rtm_cls.0.weight")
    return int(predictor.shape[0]) if predictor is not None else None


def from_mmdet_rtmdet(weights: Mapping[str, torch.Tensor]) -> Conversion:
    """An MMDetection 3.x RTMDet state dict with det-sdk's names, its stem turned to RGB input."""
    conversion = Conversion(MMDETECTION_RTMDET, {})
    dropped = 0
    for key, tensor in weights.items():
        if key.startswith("data_preprocessor."):
            dropped += 1
            continue
        name = next((new + key[len(old):] for old, new in _PREFIXES if key.startswith(old)), None)
        if name is None:
            conversion.unplaced.append(key)
            continue
        if name == STEM_CONV:
            tensor = tensor.flip(1)  # BGR -> RGB input channels
        conversion.weights[name] = tensor
        if name != key:
            conversion.renamed_from[name] = key
    if STEM_CONV in conversion.weights:
        conversion.notes.append(BGR_NOTE)
    if dropped:
        conversion.notes.append(f"data_preprocessor: {dropped} entries dropped (normalisation is the pipeline's)")
    return conversion
