"""``train.optimizer.paramwise``: per-parameter-group options (MMDetection's ``paramwise_cfg``), checked without torch.

    [train]
    optimizer = { type = "adamw", lr = 0.004, weight_decay = 0.05,
                  paramwise = { norm_decay_mult = 0.0, bias_decay_mult = 0.0, bypass_duplicate = true } }

``norm_decay_mult`` multiplies the weight decay of normalisation layers' weights and biases,
``bias_decay_mult`` that of the other biases, ``bypass_duplicate`` lets a parameter shared
by several modules (RTMDet's head) be listed once instead of being an error.
"""

from __future__ import annotations

from typing import Any

from detsdk.errors import RecipeError, suggest

PARAMWISE_DEFAULTS = {"norm_decay_mult": 1.0, "bias_decay_mult": 1.0, "bypass_duplicate": False}


def check_paramwise(value: Any, where: str) -> dict[str, Any]:
    """The paramwise table with defaults filled in; a ``RecipeError`` naming ``where`` for a bad key or value."""
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: expected a table such as {{ norm_decay_mult = 0.0, bias_decay_mult = 0.0 }}")
    options = dict(PARAMWISE_DEFAULTS)
    for key, item in value.items():
        if key not in PARAMWISE_DEFAULTS:
            raise RecipeError(
                f"{where}.{key}: unknown key{suggest(key, list(PARAMWISE_DEFAULTS))}; "
                f"valid: {', '.join(PARAMWISE_DEFAULTS)}"
            )
        if key == "bypass_duplicate":
            if not isinstance(item, bool):
                raise RecipeError(f"{where}.{key} = {item!r}: expected true or false")
        elif isinstance(item, bool) or not isinstance(item, (int, float)) or item < 0:
            raise RecipeError(f"{where}.{key} = {item!r}: expected a number >= 0")
        options[key] = item
    return options
