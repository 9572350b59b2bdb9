"""Recipe keys, their defaults, and validation against component factories.

Validation runs before anything is built: every component table is checked
against its factory's signature, with the nearest valid name suggested.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from detsdk.errors import RecipeError, suggest
from detsdk.recipe.config import DATA_SPLITS, TABLES, table_defaults
from detsdk.recipe.load import Recipe
from detsdk.recipe.options import OPTION_CHECKS, check_option
from detsdk.recipe.paramwise import check_paramwise
from detsdk.recipe.slice_options import slice_settings
from detsdk.recipe.tta_options import tta_settings

# Made from the typed tables (detsdk.recipe.config): their field defaults are the recipe's.
DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"num_classes": "auto"},
    **{table: table_defaults(kind) for table, kind in TABLES.items()},
}
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
    "hook": set(),
}


def with_defaults(data: dict) -> dict:
    """The recipe with every missing default filled in (tables merge, values win)."""
    merged = copy.deepcopy(DEFAULTS)
    for table, values in data.items():
        if isinstance(values, dict) and isinstance(merged.get(table), dict):
            for key, value in values.items():
                default = merged[table].get(key)
                # A component table that names another type replaces the default table whole; one that names
                # none (--set 'eval.metric.iou_types=[...]') changes keys of the default.
                if isinstance(value, dict) and isinstance(default, dict) and value.get("type", default.get("type")) == default.get("type"):
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
            _validate_component(recipe, registry, kind, _over_default("train", key, train[key]), f"train.{key}")
    _validate_hooks(recipe, registry, train.get("hooks", []))
    if "metric" in data.get("eval", {}):
        _validate_component(recipe, registry, "metric", _over_default("eval", "metric", data["eval"]["metric"]), "eval.metric")
    if data.get("eval", {}).get("tta"):
        tta_settings(data["eval"]["tta"], where=f"{recipe.source_of('eval.tta')}: eval.tta")
    if data.get("eval", {}).get("slice"):
        slice_settings(data["eval"]["slice"], where=f"{recipe.source_of('eval.slice')}: eval.slice")


def _over_default(table: str, key: str, spec: Any) -> Any:
    """A component table without ``type`` changes the default table's keys (as ``with_defaults`` merges it)."""
    if isinstance(spec, dict) and "type" not in spec:
        return {**DEFAULTS[table][key], **spec}
    return spec


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
        if kind == "optimizer" and key == "paramwise" and key not in parameters:
            check_paramwise(value, f"{recipe.source_of(item_path)}: {item_path}")
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


def _validate_hooks(recipe: Recipe, registry, hooks: Any) -> None:
    """``train.hooks``: an array of hook tables; a hook's ``pipeline`` parameter holds transform tables."""
    if not isinstance(hooks, list):
        raise RecipeError(f"{recipe.source_of('train.hooks')}: 'train.hooks' must be an array of hook tables")
    for i, spec in enumerate(hooks):
        _validate_component(recipe, registry, "hook", spec, f"train.hooks[{i}]")
        pipeline = spec.get("pipeline")
        if pipeline is None:
            continue
        if not isinstance(pipeline, list):
            raise RecipeError(f"{recipe.source_of('train.hooks')}: 'train.hooks[{i}].pipeline' must be an array of transform tables")
        for j, step in enumerate(pipeline):
            _validate_component(recipe, registry, "transform", step, f"train.hooks[{i}].pipeline[{j}]")


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
