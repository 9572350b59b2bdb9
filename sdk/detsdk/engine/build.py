"""Build what a recipe describes: datasets with their pipelines, the detector, the optimizer, the hooks."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from torch import nn

from detsdk.builtin.data.wrappers import SelectedDataset
from detsdk.data.loader import PipelineDataset
from detsdk.engine.hooks import Hooks, NamedHook
from detsdk.engine.param_groups import param_groups
from detsdk.errors import RecipeError
from detsdk.plugins import get_registry
from detsdk.plugins.build import build_component
from detsdk.recipe.load import Recipe
from detsdk.recipe.paramwise import check_paramwise
from detsdk.recipe.schema import GENERIC_DATASET_KEYS, NESTED_DATASET_KEYS


def build_transforms(spec: dict, key_path: str) -> list:
    """The transforms of a dataset table's ``pipeline``, in order."""
    return [
        build_component("transform", step, where=f"{key_path}.pipeline[{i}]")
        for i, step in enumerate(spec.get("pipeline", []))
    ]


def build_dataset(spec: dict, key_path: str) -> Any:
    """The dataset of a ``data.<split>`` table (or of a table nested in a wrapper), without its pipeline.

    Nested dataset tables (``dataset``, ``datasets``) are built first, the same
    way; the generic keys (``classes``, ``filter_empty``, ``min_size``) that the
    factory does not take itself are applied around what it returns.
    """
    own = {p.name for p in get_registry().get("dataset", spec.get("type"), where=f"{key_path}.type").parameters()}
    params = {k: v for k, v in spec.items() if k != "pipeline"}
    generic = {k: params.pop(k) for k in GENERIC_DATASET_KEYS if k in params and k not in own}
    # filter_empty must count what is left after the class subset and min_size, so it runs after them.
    if "filter_empty" in params and generic.keys() & {"classes", "min_size"}:
        generic["filter_empty"] = params.pop("filter_empty")
    for key in NESTED_DATASET_KEYS:
        if key in own and isinstance(params.get(key), dict):
            params[key] = build_dataset(params[key], f"{key_path}.{key}")
        elif key in own and isinstance(params.get(key), list):
            params[key] = [build_dataset(table, f"{key_path}.{key}[{i}]") for i, table in enumerate(params[key])]
    dataset = build_component("dataset", params, where=key_path)
    if not hasattr(dataset, "classes"):
        raise RecipeError(f"{key_path}: dataset '{spec['type']}' has no 'classes' attribute (see CONTRIBUTING.md)")
    if generic:
        dataset = SelectedDataset(dataset, **generic, where=key_path)
    return dataset


def build_pipeline_dataset(spec: dict, key_path: str, keep_annotations: bool = False) -> PipelineDataset:
    """A dataset wrapped with its recipe pipeline."""
    return PipelineDataset(build_dataset(spec, key_path), build_transforms(spec, key_path), keep_annotations)


def resolve_num_classes(recipe: Recipe, classes: list[str], classes_source: str) -> int:
    """``model.num_classes``: the dataset's class count for ``"auto"``, else a number that must agree."""
    wanted = recipe.data.get("model", {}).get("num_classes", "auto")
    if wanted == "auto":
        return len(classes)
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
        raise RecipeError(
            f"{recipe.source_of('model.num_classes')}: model.num_classes = {wanted!r}: expected \"auto\" or a positive integer"
        )
    if wanted != len(classes):
        raise RecipeError(
            f"{recipe.source_of('model.num_classes')}: model.num_classes = {wanted}, but {classes_source} has "
            f"{len(classes)} classes ({', '.join(map(str, classes[:8]))}{', ...' if len(classes) > 8 else ''}); "
            'set num_classes = "auto" or make them agree'
        )
    return wanted


def build_model(model_spec: dict, num_classes: int, for_inference: bool = False) -> nn.Module:
    """Backbone, then neck (given the backbone's channels), then the detector around them.

    ``for_inference`` drops the backbone's ``pretrained`` weights: a checkpoint
    is about to overwrite them, so nothing needs downloading.
    """
    spec = copy.deepcopy(model_spec)
    spec.pop("num_classes", None)
    backbone_spec = spec.pop("backbone", None)
    neck_spec = spec.pop("neck", None)
    if backbone_spec is None:
        raise RecipeError("model.backbone: missing; expected a table like { type = \"resnet\", depth = 50 }")
    if for_inference:
        backbone_spec.pop("pretrained", None)
    backbone = build_component("backbone", backbone_spec, where="model.backbone")
    neck = None
    if neck_spec is not None:
        neck = build_component("neck", neck_spec, where="model.neck", in_channels=list(backbone.out_channels))
    return build_component("detector", spec, where="model", backbone=backbone, neck=neck, num_classes=num_classes)


def build_optimizer(spec: dict, model: nn.Module):
    """The optimizer over the model's trainable parameters, in groups when ``paramwise`` asks for it."""
    spec = dict(spec)
    paramwise = spec.pop("paramwise", None)
    params = [p for p in model.parameters() if p.requires_grad]
    if paramwise is not None:
        options = check_paramwise(paramwise, "train.optimizer.paramwise")
        defaults = {p.name: p.default for p in get_registry().get("optimizer", spec["type"]).parameters()}
        params = param_groups(model, spec.get("weight_decay", defaults.get("weight_decay", 0.0)), **options)
    return build_component("optimizer", spec, where="train.optimizer", params=params)


def build_scheduler(spec: dict, optimizer, total_iters: int, iters_per_epoch: int):
    """The per-iteration LR scheduler."""
    return build_component(
        "scheduler", spec, where="train.scheduler",
        optimizer=optimizer, total_iters=total_iters, iters_per_epoch=iters_per_epoch,
    )


def build_hooks(specs: list[dict], objects: Sequence[Any] = (), builtin: Sequence[Any] = ()) -> Hooks:
    """The engine's ``builtin`` hooks, then ``train.hooks`` in recipe order, then the objects an app passed."""
    named = [NamedHook(hook, f"{type(hook).__name__} (det-sdk engine)", builtin=True) for hook in builtin]
    for i, spec in enumerate(specs):
        component = get_registry().get("hook", spec["type"], where=f"train.hooks[{i}].type")
        hook = build_component("hook", spec, where=f"train.hooks[{i}]")
        named.append(NamedHook(hook, f"'{spec['type']}' (train.hooks[{i}], plugin {component.plugin})"))
    named += [NamedHook(hook, f"{type(hook).__name__} (passed to Engine)") for hook in objects]
    return Hooks(named)
