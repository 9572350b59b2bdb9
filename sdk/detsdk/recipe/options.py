"""Recipe keys that take more than one shape of value: their checks, defaults and parsed values.

The schema checks most keys against their default's type. These need more:
``train.amp = "bf16" | "fp16" | false``, tables-or-booleans such as
``train.ema = false | true | { momentum = 0.0002 }``, and integers with a range.

    >>> table_option({"momentum": 0.001}, EMA_DEFAULTS)
    {'momentum': 0.001, 'gamma': 2000, 'update_buffers': True}
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from typing import Any

from detsdk.errors import suggest

AMP_CHOICES = ("bf16", "fp16")
# MMDetection's ExpMomentumEMA (YOLOX, RTMDet): momentum 0.0002, warm-up over ~gamma updates.
EMA_DEFAULTS = {"momentum": 0.0002, "gamma": 2000, "update_buffers": True}
# scope "backbone" (the default) or "model" (heads included); pad_multiple > 0 pads each batch on the device
# to a multiple of that many pixels, so that compiled shapes repeat (issue #13).
COMPILE_DEFAULTS = {"backend": "inductor", "mode": "default", "scope": "backbone", "pad_multiple": 0}
COMPILE_SCOPES = ("backbone", "model")
DDP_COMM_CHOICES = ("none", "fp16", "bf16")
AUTO_SCALE_LR_DEFAULTS = {"base_batch_size": 16}  # MMDetection 3's default_runtime


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_amp(value: Any) -> str | None:
    if value is False or value in AMP_CHOICES:
        return None
    return 'expected "bf16", "fp16" or false'


def _at_least(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if _is_int(value) and value >= minimum else f"expected an integer >= {minimum}"

    return check


def _table_check(defaults: dict[str, Any], checks: dict[str, Callable[[Any], bool]], shape: str):
    """A check for ``false | true | { key = value, ... }`` whose keys are those of ``defaults``."""

    def check(value: Any) -> str | None:
        if isinstance(value, bool):
            return None
        if not isinstance(value, dict):
            return f"expected false, true or a table like {shape}"
        for key, item in value.items():
            if key not in defaults:
                return f"unknown key '{key}'{suggest(key, defaults)}; valid: {', '.join(defaults)}"
            if not checks[key](item):
                return f"'{key}' = {item!r} is not valid; expected {shape}"
        return None

    return check


def _check_normalize_on_device(value: Any) -> str | None:
    if isinstance(value, bool) or value == "auto":
        return None
    return 'expected true, false or "auto" (on when training on CUDA)'


OPTION_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "train.amp": _check_amp,
    "train.accumulate": _at_least(1),
    "train.checkpoint_every_iters": _at_least(0),
    "train.max_keep_ckpts": _at_least(0),
    "train.ema": _table_check(
        EMA_DEFAULTS,
        {"momentum": lambda v: _is_number(v) and 0 < v < 1, "gamma": lambda v: _is_number(v) and v >= 0,
         "update_buffers": lambda v: isinstance(v, bool)},
        "{ momentum = 0.0002 (0 to 1), gamma = 2000 (>= 0; 0: constant momentum), update_buffers = true }",
    ),
    "train.compile": _table_check(
        COMPILE_DEFAULTS,
        {"backend": lambda v: isinstance(v, str) and bool(v), "mode": lambda v: isinstance(v, str) and bool(v),
         "scope": lambda v: v in COMPILE_SCOPES, "pad_multiple": lambda v: _is_int(v) and v >= 0},
        '{ backend = "inductor", mode = "default", scope = "backbone" | "model", pad_multiple = 0 }',
    ),
    "train.auto_scale_lr": _table_check(
        AUTO_SCALE_LR_DEFAULTS,
        {"base_batch_size": lambda v: _is_int(v) and v >= 1},
        "{ base_batch_size = 16 } (a positive integer)",
    ),
    "train.ddp_comm": lambda v: None if v in DDP_COMM_CHOICES else 'expected "none", "fp16" or "bf16"',
    "train.ddp_bucket_mb": _at_least(1),
    "data.prefetch_factor": _at_least(1),
    "data.normalize_on_device": _check_normalize_on_device,
}


def check_option(key_path: str, value: Any) -> str | None:
    """What is wrong with ``value`` for ``key_path`` (``"expected ..."``), or None when it is fine."""
    return OPTION_CHECKS[key_path](value)


def table_option(value: bool | dict, defaults: dict[str, Any]) -> dict[str, Any] | None:
    """``false`` -> None (off); ``true`` -> the defaults; a table -> the defaults updated with it."""
    if value is False:
        return None
    return {**defaults, **(value if isinstance(value, dict) else {})}
