"""Build what a recipe describes: datasets with their pipelines, the detector, the optimizer."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from detsdk.data.loader import PipelineDataset
from detsdk.errors import RecipeError
from detsdk.plugins.build import build_component
from detsdk.recipe.load import Recipe


def build_transforms(spec: dict, key_path: str) -> list:
    """The transforms of a dataset table's ``pipeline``, in order."""
    return [
        build_component("transform", step, where=f"{key_path}.pipeline[{i}]")
        for i, step in enumerate(spec.get("pipeline", []))
    ]


def build_dataset(spec: dict, key_path: str) -> Any:
    """The dataset of a ``data.<split>`` table, without its pipeline."""
    params = {k: v for k, v in spec.items() if k != "pipeline"}
    dataset = build_component("dataset", params, where=key_path)
    if not hasattr(dataset, "classes"):
        raise RecipeError(f"{key_path}: dataset '{spec['type']}' has no 'classes' attribute (see CONTRIBUTING.md)")
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
    """The optimizer over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return build_component("optimizer", spec, where="train.optimizer", params=params)


def build_scheduler(spec: dict, optimizer, total_iters: int, iters_per_epoch: int):
    """The per-iteration LR scheduler."""
    return build_component(
        "scheduler", spec, where="train.scheduler",
        optimizer=optimizer, total_iters=total_iters, iters_per_epoch=iters_per_epoch,
    )
