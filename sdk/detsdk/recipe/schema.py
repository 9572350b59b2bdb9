"""Recipe keys, their defaults, and validation against component factories.

Validation runs before anything is built: every component table is checked
against its factory's signature, with the nearest valid name suggested.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from detsdk.errors import RecipeError, suggest
from detsdk.recipe.load import Recipe
from detsdk.recipe.options import OPTION_CHECKS, check_option

DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"num_classes": "auto"},
    "data": {
        "batch_size": 2,
        "num_workers": 2,
        "pin_memory": True,  # page-locked batches, when training on CUDA
        "persistent_workers": True,  # keep the loader's workers between epochs (with num_workers > 0)
        "prefetch_factor": 2,  # batches each worker loads ahead (with num_workers > 0)
        # Ship uint8 images and normalise on the device when the train pipeline ends with normalize [+ pad].
        "normalize_on_device": "auto",  # "auto": on when training on CUDA
        "group_by_aspect_ratio": False,  # batch wide (w >= h) and tall images apart (docs/distributed.md)
    },
    "train": {
        "epochs": 12,
        "iters": 0,  # > 0: iteration-based training; intervals below count iterations
        "optimizer": {"type": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-4},
        "scheduler": {"type": "constant"},
        # 0: every epoch when training by epochs; only at the end when training by iterations.
        "eval_interval": 0,
        "checkpoint_interval": 0,
        "log_interval": 20,
        "grad_clip": 0.0,  # max gradient norm; 0 turns clipping off
        "checkpoint_every_iters": 0,  # > 0: also write last.pt every N iterations (exact mid-epoch resume)
        # Precision and optimisation (docs/training.md; shapes checked by detsdk.recipe.options).
        "amp": False,  # "bf16" | "fp16" | false
        "accumulate": 1,  # micro-batches per iteration (one optimizer step)
        "ema": False,  # false | true | { momentum = 0.0002, gamma = 2000, update_buffers = true }
        "channels_last": False,
        # false | true | { backend, mode, scope = "backbone" | "model", pad_multiple = 0 } (docs/training.md)
        "compile": False,
        "auto_scale_lr": False,  # false | true | { base_batch_size = 16 }
        # Distributed (torchrun; docs/distributed.md): BatchNorm statistics over all ranks (CUDA), and
        # DDP for detectors whose trainable parameters do not all get a gradient every iteration.
        "sync_bn": False,
        "find_unused_parameters": False,
        "ddp_comm": "none",  # "fp16" | "bf16": DDP all-reduces gradients compressed (comm hook)
        "ddp_bucket_mb": 25,  # DDP's gradient bucket size (bucket_cap_mb)
    },
    # batch_size 0: data.batch_size; tta {}: off (see detsdk.engine.tta for its keys)
    "eval": {"metric": {"type": "coco"}, "batch_size": 0, "tta": {}},
    "runtime": {
        "work_dir": "", "seed": 0, "load_from": "", "device": "auto", "plot_samples": 8,
        "deterministic": False,  # deterministic algorithms and cuDNN: the same run gives the same weights
        "tensorboard": False,  # write <work_dir>/tensorboard (pip install 'det-sdk[tensorboard]')
        "dist_timeout": 600.0,  # seconds a distributed collective may wait before the run fails
    },
}
DATA_SPLITS = ("train", "val", "test")
# Detector arguments the engine builds from recipe keys of the same name; none is required
# (a detector may have no neck, and num_classes defaults to "auto").
ENGINE_BUILT = {"backbone", "neck", "num_classes"}

# Keys every dataset table takes; the engine applies those its factory does not take itself
# (detsdk.builtin.data.wrappers.SelectedDataset), with these defaults.
GENERIC_DATASET_KEYS: dict[str, Any] = {"classes": None, "filter_empty": False, "min_size": 0.0}
# Dataset parameters that hold nested dataset tables (wrappers): one table, or an array of them.
NESTED_DATASET_KEYS = ("dataset", "datasets")

# Arguments the engine passes itself; a recipe may not set them.
INJECTED = {
    "backbone": set(),
    "neck": {"in_channels"},
    "head": {"in_channels", "num_classes"},
    "detector": set(),
    "dataset": set(),
    "transform": set(),
    "scheduler": {"optimizer", "total_iters", "iters_per_epoch"},
    "optimizer": {"params"},
    "metric": set(),
}


def with_defaults(data: dict) -> dict:
    """The recipe with every missing default filled in (tables merge, values win)."""
    merged = copy.deepcopy(DEFAULTS)
    for table, values in data.items():
        if isinstance(values, dict) and isinstance(merged.get(table), dict):
            for key, value in values.items():
                default = merged[table].get(key)
                # A component table that names another type replaces the default table whole.
                if isinstance(value, dict) and isinstance(default, dict) and value.get("type") == default.get("type"):
                    merged[table][key] = {**default, **value}
                else:
                    merged[table][key] = copy.deepcopy(value)
        else:
            merged[table] = copy.deepcopy(values)
    return merged


def nested_kind(key: str) -> str | None:
    """The component kind of a nested table key inside a component (``backbone``, ``*_head``)."""
    if key in ("backbone", "neck"):
        return key
    if key.endswith("head"):
        return "head"
    return None


def validate_recipe(recipe: Recipe, registry=None) -> None:
    """Check every table and component of a resolved recipe; raise ``RecipeError`` on the first problem."""
    from detsdk.plugins import get_registry

    registry = registry or get_registry()
    data = recipe.data
    for table in data:
        if table not in DEFAULTS:
            raise RecipeError(
                f"{recipe.source_of(table)}: unknown top-level key '{table}'{suggest(table, DEFAULTS)}; "
                f"expected one of {', '.join(DEFAULTS)}"
            )
    for table in ("train", "eval", "runtime", "data"):
        allowed = set(DEFAULTS[table]) | (set(DATA_SPLITS) if table == "data" else set())
        values = data.get(table, {})
        if not isinstance(values, dict):
            raise RecipeError(f"{recipe.source_of(table)}: '{table}' must be a table")
        for key, value in values.items():
            key_path = f"{table}.{key}"
            if key not in allowed:
                raise RecipeError(f"{recipe.source_of(key_path)}: unknown key '{key_path}'{suggest(key, allowed)}")
            if key_path in OPTION_CHECKS:
                problem = check_option(key_path, value)
                if problem:
                    raise RecipeError(f"{recipe.source_of(key_path)}: '{key_path}' = {value!r}: {problem}")
            else:
                _check_value_type(recipe, key_path, value, DEFAULTS[table].get(key))
    if "model" in data:  # `sdk eval --results` needs no model
        _validate_component(recipe, registry, "detector", data["model"], "model")
    for split in DATA_SPLITS:
        spec = data.get("data", {}).get(split)
        if spec is not None:
            _validate_component(recipe, registry, "dataset", spec, f"data.{split}")
    train = data.get("train", {})
    for key, kind in (("optimizer", "optimizer"), ("scheduler", "scheduler")):
        if key in train:
            _validate_component(recipe, registry, kind, train[key], f"train.{key}")
    if "metric" in data.get("eval", {}):
        _validate_component(recipe, registry, "metric", data["eval"]["metric"], "eval.metric")
    if data.get("eval", {}).get("tta"):
        from detsdk.engine.tta import tta_settings  # imports torch: only for recipes that ask for TTA

        tta_settings(data["eval"]["tta"], where=f"{recipe.source_of('eval.tta')}: eval.tta")


def _validate_component(recipe: Recipe, registry, kind: str, spec: Any, key_path: str) -> None:
    source = recipe.source_of(key_path)
    if not isinstance(spec, dict) or "type" not in spec:
        raise RecipeError(f"{source}: '{key_path}' must be a table with 'type' naming a {kind}")
    component = registry.get(kind, spec["type"], where=f"{recipe.source_of(key_path + '.type')}: {key_path}.type")
    parameters = {p.name: p for p in component.parameters()}
    open_ended = component.accepts_any_keyword()
    for key, value in spec.items():
        item_path = f"{key_path}.{key}"
        if key == "type" or (kind == "dataset" and key == "pipeline"):
            continue
        if kind == "dataset" and key in GENERIC_DATASET_KEYS and key not in parameters:
            _check_generic_dataset_key(recipe, item_path, value)
            continue
        if kind == "dataset" and key in NESTED_DATASET_KEYS and key in parameters:
            _validate_nested_datasets(recipe, registry, value, item_path)
        if key in INJECTED[kind]:
            raise RecipeError(f"{recipe.source_of(item_path)}: '{item_path}' is set by the engine; remove it")
        if key not in parameters and not open_ended:
            names = [n for n in parameters if n not in INJECTED[kind]]
            raise RecipeError(
                f"{recipe.source_of(item_path)}: unknown parameter '{key}' for {kind} '{spec['type']}' "
                f"at {item_path}{suggest(key, names)}; valid: {', '.join(names) or 'none'}"
            )
        if key in parameters:
            _check_value_type(recipe, item_path, value, parameters[key].default)
        sub_kind = nested_kind(key) if isinstance(value, dict) else None
        if sub_kind and kind in ("detector", "head"):
            _validate_component(recipe, registry, sub_kind, value, item_path)
    if kind == "dataset":
        pipeline = spec.get("pipeline", [])
        if not isinstance(pipeline, list):
            raise RecipeError(f"{source}: '{key_path}.pipeline' must be an array of transform tables")
        for i, step in enumerate(pipeline):
            step_path = f"{key_path}.pipeline[{i}]"
            _validate_component(recipe, registry, "transform", step, step_path)
            # A crop or expand moves pixels in a way detections cannot be mapped back from.
            if key_path != "data.train" and getattr(registry.get("transform", step["type"]).load(), "train_only", False):
                raise RecipeError(
                    f"{recipe.source_of(step_path)}: {step_path}: transform '{step['type']}' is train-only "
                    "(detections on its output cannot be mapped back to the image); use it in data.train only"
                )
    missing = [
        name
        for name, p in parameters.items()
        if p.default is inspect.Parameter.empty and name not in spec and name not in INJECTED[kind]
        and not (kind == "detector" and name in ENGINE_BUILT)
    ]
    if missing:
        raise RecipeError(f"{source}: {kind} '{spec['type']}' at {key_path} needs {', '.join(missing)}")


def _check_generic_dataset_key(recipe: Recipe, key_path: str, value: Any) -> None:
    """``classes`` must be distinct names; ``filter_empty`` a bool; ``min_size`` a number >= 0."""
    if key_path.endswith(".classes"):
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise RecipeError(f"{recipe.source_of(key_path)}: '{key_path}' = {value!r}: expected a non-empty array of class names")
        if len(set(value)) != len(value):
            raise RecipeError(f"{recipe.source_of(key_path)}: '{key_path}' lists a class more than once")
        return
    default = GENERIC_DATASET_KEYS[key_path.rsplit(".", 1)[1]]
    _check_value_type(recipe, key_path, value, default)
    if key_path.endswith(".min_size") and value < 0:
        raise RecipeError(f"{recipe.source_of(key_path)}: '{key_path}' = {value!r}: expected a number >= 0 (pixels)")


def _validate_nested_datasets(recipe: Recipe, registry, value: Any, key_path: str) -> None:
    """Validate a wrapper's ``dataset`` table or ``datasets`` array like a top-level dataset table."""
    tables = value if isinstance(value, list) else [value]
    paths = [f"{key_path}[{i}]" for i in range(len(tables))] if isinstance(value, list) else [key_path]
    for table, path in zip(tables, paths):
        if isinstance(table, dict) and "pipeline" in table:
            raise RecipeError(
                f"{recipe.source_of(path)}: '{path}.pipeline': a nested dataset has no pipeline of its own; "
                "put it on the outer data.<split> table"
            )
        _validate_component(recipe, registry, "dataset", table, path)


_ACCEPTED_TYPES = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}


def _check_value_type(recipe: Recipe, key_path: str, value: Any, default: Any) -> None:
    """Reject a value whose type cannot stand for a scalar default's (an int may stand for a float)."""
    accepted = _ACCEPTED_TYPES.get(type(default))
    if accepted is None:
        return
    if isinstance(value, accepted) and (isinstance(value, bool) == isinstance(default, bool)):
        return
    raise RecipeError(
        f"{recipe.source_of(key_path)}: '{key_path}' = {value!r}: expected a {type(default).__name__} "
        f"(default {default!r})"
    )
