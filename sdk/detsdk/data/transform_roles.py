"""What a transform declares it is, so the engine treats a plugin's transform as it treats the built-in one.

A transform class sets ``transform_role`` to one of these; core code asks
``role_of(transform)`` instead of testing for the built-in classes:

| role | the transform also has | used by |
| --- | --- | --- |
| ``"normalize"`` | ``mean``, ``std`` (RGB, uint8 units) | device normalisation (``data.normalize_on_device``) |
| ``"pad"`` | ``pad_value`` | device normalisation (padding must be 0 after it) |
| ``"resize"`` | ``with_scale(scale)``: a copy that resizes to ``scale``; ``sample_scale()`` and ``target_size(h, w, scale)`` | TTA scales (``eval.tta``); ``data.decode_on_device`` |
| ``"random_flip"`` | ``direction``; ``draw()``: one flip decision | TTA leaves it out and flips each variant itself; ``data.decode_on_device`` |
"""

from __future__ import annotations

from typing import Any

NORMALIZE = "normalize"
PAD = "pad"
RESIZE = "resize"
RANDOM_FLIP = "random_flip"
ROLES = (NORMALIZE, PAD, RESIZE, RANDOM_FLIP)


def role_of(transform: Any) -> str | None:
    """The role a transform declares (``transform_role``), or None."""
    return getattr(transform, "transform_role", None)
