"""CutOut: paint random rectangles of the image with a fill colour (MMDetection's ``CutOut``).

Boxes and masks are left as they are: the objects are still there, partly hidden.

    >>> pipeline = [CutOut(n_holes=[1, 3], cutout_shape=[[8, 8], [16, 16]]), Normalize()]  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from detsdk.builtin.transforms.geometric import _is_number
from detsdk.errors import RecipeError


def _pairs(name: str, value, positive_fraction: bool) -> list[tuple[float, float]]:
    """One ``[w, h]`` pair or a list of them, as a list of float pairs."""
    def is_pair(v) -> bool:
        return (
            isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(x) and x > 0 for x in v)
            and (not positive_fraction or all(x <= 1 for x in v))
        )

    if is_pair(value):
        return [(float(value[0]), float(value[1]))]
    if isinstance(value, (list, tuple)) and value and all(is_pair(v) for v in value):
        return [(float(v[0]), float(v[1])) for v in value]
    what = "fractions in (0, 1]" if positive_fraction else "positive pixel sizes"
    raise RecipeError(f"cutout: {name} = {value!r}: expected a [width, height] pair of {what}, or a list of pairs")


class CutOut:
    """Fill ``n_holes`` rectangles at random places with ``fill``.

    Each hole's top-left corner is drawn uniformly over the image and its size
    picked from ``cutout_shape`` (pixels) or ``cutout_ratio`` (fractions of
    the image's width and height); holes are clipped at the image border.

    Args:
        n_holes: the number of holes, or ``[low, high]`` to draw it from (both included).
        cutout_shape: one ``[width, height]`` in pixels, or a list to pick from.
        cutout_ratio: one ``[width, height]`` as fractions of the image's, or a list
            (give exactly one of ``cutout_shape`` and ``cutout_ratio``).
        fill: the hole colour, RGB (uint8 images) or one value per channel.
    """

    def __init__(
        self,
        n_holes: list | int = [1, 1],  # noqa: B006 (never mutated; a list so that a recipe may give either)
        cutout_shape: list | None = None,
        cutout_ratio: list | None = None,
        fill: list = [0, 0, 0],  # noqa: B006 (never mutated)
    ):
        holes = n_holes if isinstance(n_holes, (list, tuple)) else [n_holes, n_holes]
        if not (
            len(holes) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in holes)
            and holes[0] <= holes[1]
        ):
            raise RecipeError(f"cutout: n_holes = {n_holes!r}: expected an integer >= 0 or [low, high]")
        if (cutout_shape is None) == (cutout_ratio is None):
            raise RecipeError("cutout: give exactly one of cutout_shape (pixels) and cutout_ratio (fractions)")
        if not (isinstance(fill, (list, tuple)) and len(fill) == 3 and all(_is_number(v) for v in fill)):
            raise RecipeError(f"cutout: fill = {fill!r}: expected three numbers (R, G, B)")
        self.n_holes = (holes[0], holes[1])
        self.relative = cutout_ratio is not None
        self.shapes = _pairs(
            "cutout_ratio" if self.relative else "cutout_shape",
            cutout_ratio if self.relative else cutout_shape,
            positive_fraction=self.relative,
        )
        self.fill = [float(v) for v in fill]

    def __call__(self, sample: dict) -> dict:
        """Paint the holes on a copy of the image; annotations are unchanged."""
        image = np.array(sample["image"], copy=True)
        height, width = image.shape[:2]
        fill = np.asarray(self.fill, dtype=np.float64).astype(image.dtype)
        for _ in range(np.random.randint(self.n_holes[0], self.n_holes[1] + 1)):
            x1, y1 = np.random.randint(0, width), np.random.randint(0, height)
            w, h = self.shapes[np.random.randint(len(self.shapes))]
            if self.relative:
                w, h = w * width, h * height
            image[y1 : min(y1 + int(h), height), x1 : min(x1 + int(w), width)] = fill
        sample = dict(sample)
        sample["image"] = image
        return sample

    def __repr__(self) -> str:
        key = "cutout_ratio" if self.relative else "cutout_shape"
        return f"CutOut(n_holes={list(self.n_holes)}, {key}={[list(s) for s in self.shapes]}, fill={self.fill})"
