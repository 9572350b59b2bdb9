"""``[eval] slice``: the table's keys, checked and parsed into ``SliceSettings`` (no torch; ``detsdk.engine.slicing`` runs it)."""

from __future__ import annotations

from numbers import Real
from typing import Any

import attrs

from detsdk.errors import RecipeError
from detsdk.recipe.tta_options import settings_table

KEYS = ("size", "overlap", "full_image", "iou_threshold", "max_per_image", "batch_size")


@attrs.frozen
class SliceSettings:
    """What ``[eval] slice`` or ``predict(slice=...)`` asks for.

    Attributes:
        size: ``(height, width)`` of a window in pixels.
        overlap: fraction of a window's height (width) shared with the next window, in [0, 1).
        full_image: also detect on the whole image and merge those detections in.
        iou_threshold: IoU above which two detections of a class are merged.
        max_per_image: detections kept per image after merging, best first.
        batch_size: windows per call of the detector.
    """

    size: tuple[int, int]
    overlap: float = 0.2
    full_image: bool = True
    iou_threshold: float = 0.5
    max_per_image: int = 100
    batch_size: int = 4


def slice_settings(value: Any, where: str = "eval.slice") -> SliceSettings | None:
    """Parse ``[eval] slice`` (a table), a window size (int) or ``SliceSettings``; None or ``{}``: no slicing."""
    if isinstance(value, SliceSettings):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"size": value}
    example = "{ size = [640, 640], overlap = 0.2, full_image = true }"
    value = settings_table(value, where, KEYS, example)
    if value is None:
        return None
    if "size" not in value:
        raise RecipeError(f"{where}: 'size' is missing; expected e.g. {example}")
    size = value["size"]
    if _positive_int(size):
        size = [size, size]
    if not (isinstance(size, list | tuple) and len(size) == 2 and all(_positive_int(v) for v in size)):
        raise RecipeError(f"{where}.size = {size!r}: expected [height, width] in pixels (or one number)")
    overlap = value.get("overlap", 0.2)
    if isinstance(overlap, bool) or not isinstance(overlap, Real) or not 0 <= overlap < 1:
        raise RecipeError(f"{where}.overlap = {overlap!r}: expected a fraction in [0, 1)")
    full_image = value.get("full_image", True)
    if not isinstance(full_image, bool):
        raise RecipeError(f"{where}.full_image = {full_image!r}: expected true or false")
    iou = value.get("iou_threshold", 0.5)
    if isinstance(iou, bool) or not isinstance(iou, Real) or not 0 < iou <= 1:
        raise RecipeError(f"{where}.iou_threshold = {iou!r}: expected a number in (0, 1]")
    for key in ("max_per_image", "batch_size"):
        if key in value and not _positive_int(value[key]):
            raise RecipeError(f"{where}.{key} = {value[key]!r}: expected an integer >= 1")
    return SliceSettings(size=(int(size[0]), int(size[1])), overlap=float(overlap), full_image=full_image,
                         iou_threshold=float(iou), max_per_image=int(value.get("max_per_image", 100)),
                         batch_size=int(value.get("batch_size", 4)))


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
