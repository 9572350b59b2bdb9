"""Multi-level RoIAlign without host syncs, for a fixed number of RoIs per image (training).

torchvision's ``MultiScaleRoIAlign`` picks each RoI's FPN level (the FPN paper's rule),
then runs ``roi_align`` on each level's RoIs, found with ``torch.where`` (a sync per
level), and infers its scales with ``.item()``. Here the scales come from the shapes on
the host and the levels are stacked into one tall map (an atlas): each RoI is moved to its
level's block and scaled by the level's scale, and one ``roi_align`` (scale 1) pools all
of them. Each block has one replicated row and column past its edge, where
``roi_align`` would clamp, so the samples are those of ``MultiScaleRoIAlign``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.ops import MultiScaleRoIAlign, roi_align

CANONICAL_SCALE, CANONICAL_LEVEL, EPS = 224, 4, 1e-6  # torchvision's LevelMapper


def level_scales(features: list[torch.Tensor], image_shapes: list[tuple[int, int]]) -> list[float]:
    """Each map's scale relative to the input, a power of two (torchvision's ``_infer_scale``)."""
    height = max(shape[0] for shape in image_shapes)
    return [2.0 ** round(math.log2(feature.shape[-2] / height)) for feature in features]  # torchvision reads the height


def level_rois(rois: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """The RoIs in the feature's dtype, except under autocast, whose ``roi_align`` runs in fp32 anyway."""
    if feature.dtype == rois.dtype or torch.is_autocast_enabled(feature.device.type):
        return rois
    return rois.to(feature.dtype)


def stack_levels(maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """The maps one above the other, each with a replicated last row and column, zero-padded to one width;
    returns the atlas and each level's first row."""
    width = max(m.shape[-1] for m in maps) + 1
    blocks, rows, row = [], [], 0
    for feature in maps:
        block = F.pad(feature, (0, 1, 0, 1), mode="replicate")
        blocks.append(F.pad(block, (0, width - block.shape[-1])))
        rows.append(row)
        row += block.shape[-2]
    return torch.cat(blocks, dim=-2), rows


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
    if len(maps) == 1:
        rois = torch.cat([image_index[:, None], flat], dim=1)
        return roi_align(maps[0], level_rois(rois, maps[0]), pooler.output_size, scales[0], pooler.sampling_ratio)
    k_min, k_max = -math.log2(scales[0]), -math.log2(scales[-1])
    size = torch.sqrt((flat[:, 2] - flat[:, 0]) * (flat[:, 3] - flat[:, 1]))
    level = torch.floor(CANONICAL_LEVEL + torch.log2(size / CANONICAL_SCALE + EPS)).clamp(k_min, k_max) - k_min
    level = level.to(torch.int64)
    atlas, rows = stack_levels(maps)
    scale = torch.tensor(scales, dtype=flat.dtype, device=flat.device)[level]
    shift = torch.tensor(rows, dtype=flat.dtype, device=flat.device)[level]
    placed = flat * scale[:, None] + torch.stack([torch.zeros_like(shift), shift] * 2, dim=1)
    rois = torch.cat([image_index[:, None], placed], dim=1)
    return roi_align(atlas, level_rois(rois, atlas), pooler.output_size, 1.0, pooler.sampling_ratio)
