"""The distance-point box coder (MMDetection's ``DistancePointBBoxCoder``): a box as distances from a point."""

from __future__ import annotations

import torch


def distance2bbox(
    points: torch.Tensor, distances: torch.Tensor, max_shape: tuple[int, int] | None = None
) -> torch.Tensor:
    """Boxes ``x1 y1 x2 y2`` from points ``(..., 2)`` and distances ``(..., 4)`` to the left, top, right, bottom.

    With ``max_shape`` ``(h, w)`` the boxes are clipped to the image.

    >>> distance2bbox(torch.tensor([[8., 8.]]), torch.tensor([[2., 3., 4., 5.]]))
    tensor([[ 6.,  5., 12., 13.]])
    """
    boxes = torch.cat([points - distances[..., :2], points + distances[..., 2:]], dim=-1)
    if max_shape is not None:
        height, width = max_shape
        boxes = torch.stack(
            [boxes[..., 0].clamp(0, width), boxes[..., 1].clamp(0, height),
             boxes[..., 2].clamp(0, width), boxes[..., 3].clamp(0, height)],
            dim=-1,
        )
    return boxes


def bbox2distance(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The inverse of ``distance2bbox``: distances from each point to its box's four sides."""
    return torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1)


class DistancePointBoxCoder:
    """``encode(points, boxes)`` → distances, ``decode(points, distances, max_shape)`` → boxes."""

    def encode(self, points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Distances (left, top, right, bottom) from ``points`` to ``boxes``."""
        return bbox2distance(points, boxes)

    def decode(
        self, points: torch.Tensor, distances: torch.Tensor, max_shape: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Boxes from ``points`` and ``distances``, clipped to ``max_shape`` ``(h, w)`` if given."""
        return distance2bbox(points, distances, max_shape)
