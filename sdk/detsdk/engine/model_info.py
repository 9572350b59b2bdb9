"""The model a recipe describes, built for counting (``sdk info``): no training data needed when
``model.num_classes`` is a number, no pretrained weights downloaded."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torch import nn

from detsdk.engine import build
from detsdk.engine.predictor import inference_pipeline_spec
from detsdk.recipe import load_recipe, validate_recipe, with_defaults
from detsdk.errors import RecipeError


def recipe_model(source: str | Path, overrides: Iterable[str] = ()) -> tuple[nn.Module, str]:
    """The recipe's detector in eval mode, and where its class count came from."""
    recipe = load_recipe(source, overrides)
    validate_recipe(recipe)
    config = with_defaults(recipe.data)
    if "type" not in config["model"]:
        raise RecipeError(f"{recipe.source_of('model')}: the recipe has no [model] table with a 'type'")
    wanted = config["model"].get("num_classes", "auto")
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        num_classes, where = wanted, f"model.num_classes = {wanted}"
    else:
        split = next((s for s in ("train", "val", "test") if config["data"].get(s) is not None), None)
        if split is None:
            raise RecipeError(f"{recipe.source_of('model')}: num_classes = \"auto\" needs a data table to count "
                              "classes in; add one or pass --set model.num_classes=N")
        classes = list(build.build_dataset(config["data"][split], f"data.{split}").classes)
        num_classes = build.resolve_num_classes(recipe, classes, f"data.{split}")
        where = f"{num_classes} classes from data.{split}"
    return build.build_model(config["model"], num_classes, for_inference=True).eval(), where


def default_shape(source: str | Path, overrides: Iterable[str] = ()) -> tuple[int, int]:
    """(H, W) the inference pipeline resizes to: its ``resize`` scale's short and long side, else 800×1333."""
    config = with_defaults(load_recipe(source, overrides).data)
    for step in inference_pipeline_spec(config):
        scale = step.get("scale") if step.get("type") == "resize" else None
        if isinstance(scale, (list, tuple)) and len(scale) == 2:
            return int(min(scale)), int(max(scale))
        if isinstance(scale, int):
            return int(scale), int(scale)
    return 800, 1333
