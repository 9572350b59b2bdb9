"""Anchors in float32 whatever the features' dtype.

torchvision's ``AnchorGenerator`` builds anchors in the feature maps' dtype: under
bf16 autocast that is 8 significant bits, so anchor centres near x = 1333 land on
8-pixel steps. Box coding and decoding then follow that dtype. Here the anchors are
always float32 (and identical to torchvision's in fp32).
"""

from __future__ import annotations

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList


class Float32AnchorGenerator(AnchorGenerator):
    """torchvision's ``AnchorGenerator`` whose anchors are float32 on the features' device."""

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per image, the anchors of every level, fine to coarse (``A x 4``, float32)."""
        # Only the maps' shapes, dtype and device are read: zero-stride float32 stand-ins cost nothing.
        shapes = [torch.empty((), dtype=torch.float32, device=f.device).expand(f.shape) for f in feature_maps]
        return super().forward(image_list, shapes)
