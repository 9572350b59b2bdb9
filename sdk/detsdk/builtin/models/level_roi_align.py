"""Multi-level RoIAlign without host syncs, for a fixed number of RoIs per image (training).

torchvision's ``MultiScaleRoIAlign`` picks each RoI's FPN level (the FPN paper's rule),
then runs ``roi_align`` on each level's RoIs, found with ``torch.where`` (a sync per
level) and its scales with ``.item()``. Here the scales come from the shapes on the host,
``roi_align`` runs on every level for every RoI and each RoI keeps its own level's
result: the same numbers, more arithmetic (one ``roi_align`` per level), no sync.
"""

from __future__ import annotations

import math

import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

CANONICAL_SCALE, CANONICAL_LEVEL, EPS = 224, 4, 1e-6  # torchvision's LevelMapper


def level_scales(features: list[torch.Tensor], image_shapes: list[tuple[int, int]]) -> list[float]:
    """Each map's scale relative to the input, a power of two (torchvision's ``_infer_scale``)."""
    height = max(shape[0] for shape in image_shapes)
    scales = []
    for feature in features:
        scales.append(2.0 ** round(math.log2(feature.shape[-2] / height)))  # torchvision reads the height
    return scales


def level_rois(rois: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """The RoIs in the feature's dtype, except under autocast, whose ``roi_align`` runs in fp32 anyway."""
    if feature.dtype == rois.dtype or torch.is_autocast_enabled(feature.device.type):
        return rois
    return rois.to(feature.dtype)


def pool_levels(
    pooler: MultiScaleRoIAlign, features: dict[str, torch.Tensor], boxes: torch.Tensor,
    image_shapes: list[tuple[int, int]],
) -> torch.Tensor:
    """``pooler``'s output for ``B x K x 4`` boxes (image after image): ``B*K x C x h x w``."""
    maps = [feature for name, feature in features.items() if name in pooler.featmap_names]  # as torchvision filters
    scales = level_scales(maps, image_shapes)
    batch, count = boxes.shape[:2]
    image_index = torch.arange(batch, device=boxes.device, dtype=boxes.dtype).repeat_interleave(count)
    flat = boxes.reshape(-1, 4)
    rois = torch.cat([image_index[:, None], flat], dim=1)
    output_size = pooler.output_size
    if len(maps) == 1:
        return roi_align(maps[0], level_rois(rois, maps[0]), output_size, scales[0], pooler.sampling_ratio)
    k_min, k_max = -math.log2(scales[0]), -math.log2(scales[-1])
    size = torch.sqrt((flat[:, 2] - flat[:, 0]) * (flat[:, 3] - flat[:, 1]))
    level = torch.floor(CANONICAL_LEVEL + torch.log2(size / CANONICAL_SCALE + EPS)).clamp(k_min, k_max) - k_min
    level = level.to(torch.int64)
    pooled = None
    for index, (feature, scale) in enumerate(zip(maps, scales)):
        result = roi_align(feature, level_rois(rois, feature), output_size, scale, pooler.sampling_ratio)
        chosen = (level == index).reshape(-1, 1, 1, 1)
        pooled = torch.where(chosen, result, torch.zeros_like(result) if pooled is None else pooled)
    return pooled
