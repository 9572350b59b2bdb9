"""``[eval] tta``: the table's keys, checked and parsed into ``TTASettings`` (no torch; ``detsdk.engine.tta`` runs it)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Any

import attrs

from detsdk.errors import RecipeError, suggest

KEYS = ("scales", "flip", "flip_direction", "iou_threshold", "max_per_image")


@attrs.frozen
class TTASettings:
    """What ``[eval] tta`` asks for.

    Attributes:
        scales: ``(long_edge, short_edge)`` pairs (``resize``'s ``scale``); empty: the pipeline's own.
        flip: also detect on the flipped image of every scale.
        flip_direction: ``"horizontal"`` or ``"vertical"``.
        iou_threshold: the IoU above which two detections of a class are merged (NMS).
        max_per_image: how many detections to keep per image after merging, best first.
    """

    scales: tuple[tuple[float, float], ...] = ()
    flip: bool = False
    flip_direction: str = "horizontal"
    iou_threshold: float = 0.5
    max_per_image: int = 100

    @property
    def num_variants(self) -> int:
        """How many times the model runs per image."""
        return max(len(self.scales), 1) * (2 if self.flip else 1)


def tta_settings(table: Any, where: str = "eval.tta") -> TTASettings | None:
    """Parse and check an ``[eval] tta`` table; None when it is empty (TTA off).

    Errors name ``where`` and the key, e.g. ``recipe.toml: eval.tta.scales``.
    """
    example = "{ scales = [[1333, 800], [1666, 1000]], flip = true }"
    table = settings_table(table, where, KEYS, example)
    if table is None:
        return None
    scales = table.get("scales", [])
    if not (isinstance(scales, list) and all(_is_positive_pair(s) for s in scales)):
        raise RecipeError(
            f"{where}.scales = {scales!r}: expected a list of [long_edge, short_edge] pairs, e.g. [[1333, 800]]"
        )
    flip = table.get("flip", False)
    if not isinstance(flip, bool):
        raise RecipeError(f"{where}.flip = {flip!r}: expected true or false")
    direction = table.get("flip_direction", "horizontal")
    if direction not in ("horizontal", "vertical"):
        raise RecipeError(f"{where}.flip_direction = {direction!r}: expected 'horizontal' or 'vertical'")
    iou = table.get("iou_threshold", 0.5)
    if isinstance(iou, bool) or not isinstance(iou, Real) or not 0 < iou <= 1:
        raise RecipeError(f"{where}.iou_threshold = {iou!r}: expected a number in (0, 1]")
    max_per_image = table.get("max_per_image", 100)
    if isinstance(max_per_image, bool) or not isinstance(max_per_image, int) or max_per_image < 1:
        raise RecipeError(f"{where}.max_per_image = {max_per_image!r}: expected an integer >= 1")
    if not scales and not flip:
        raise RecipeError(f"{where}: nothing to augment; give scales, flip = true, or both (e.g. {example})")
    return TTASettings(
        scales=tuple((float(s[0]), float(s[1])) for s in scales),
        flip=flip,
        flip_direction=direction,
        iou_threshold=float(iou),
        max_per_image=max_per_image,
    )


def settings_table(table: Any, where: str, keys: Sequence[str], example: str) -> dict | None:
    """An ``[eval]`` settings table checked for its type and key names; None when it is empty (off)."""
    if table is None or table == {}:
        return None
    if not isinstance(table, dict):
        raise RecipeError(f"{where} = {table!r}: expected a table like {example}")
    for key in table:
        if key not in keys:
            raise RecipeError(f"{where}: unknown key '{key}'{suggest(key, keys)}; valid: {', '.join(keys)}")
    return table


def _is_positive_pair(value: Any) -> bool:
    return (
        isinstance(value, list) and len(value) == 2
        and all(isinstance(v, Real) and not isinstance(v, bool) and v > 0 for v in value)
    )
