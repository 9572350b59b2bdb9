"""Build a plugin's components the way the kit checks them: check-table parameters, fixtures, tiny defaults."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detsdk.plugins.registry import Component, Registry, import_string
from detsdk.testing.config import CheckConfig, ComponentCheckConfig

# A detector without a ``model`` check table is checked on this tiny backbone and neck.
DEFAULT_MODEL = {
    "backbone": {"type": "detsdk/resnet", "depth": 18, "frozen_stages": -1, "norm": "bn"},
    "neck": {"type": "detsdk/fpn", "out_channels": 32},
}
CHECK_NUM_CLASSES = 3
# Arguments the engine passes itself, per kind: never "missing" from a check table.
INJECTED = {
    "neck": {"in_channels"},
    "scheduler": {"optimizer", "total_iters", "iters_per_epoch"},
    "optimizer": {"params"},
    "detector": {"backbone", "neck", "num_classes"},
    "head": {"in_channels", "num_classes"},
}


class NeedsParameters(Exception):
    """The factory has required parameters that neither the check table nor a fixture gives."""


def component_params(component: Component, settings: ComponentCheckConfig, folder: Path) -> dict[str, Any]:
    """The check table's ``params``, then what its ``fixture(folder)`` returns; refuses when a required one is missing."""
    params = dict(settings.params)
    if settings.fixture:
        folder.mkdir(parents=True, exist_ok=True)
        made = import_string(settings.fixture, owner=component.qualified_name)(folder)
        if not isinstance(made, Mapping):
            raise TypeError(f"fixture {settings.fixture} returned {type(made).__name__}, expected a dict of parameters")
        params.update(made)
    missing = [p.name for p in component.parameters()
               if p.default is inspect.Parameter.empty and p.name not in params
               and p.name not in INJECTED.get(component.kind, ())]
    if missing:
        raise NeedsParameters(", ".join(missing))
    return params


def takes_parameter(component: Component, name: str) -> bool:
    """True when the factory has a parameter ``name``."""
    return any(p.name == name for p in component.parameters())


def detector_model(component: Component, settings: ComponentCheckConfig) -> dict[str, Any]:
    """The ``[model]`` table a detector is checked as: its check table's ``model``, else ``DEFAULT_MODEL``."""
    model = {**DEFAULT_MODEL, **(settings.model or {}), **settings.params}
    model["type"] = component.qualified_name
    return model


def build_detector(model: dict[str, Any]):
    """The detector a ``[model]`` table describes, for ``CHECK_NUM_CLASSES`` classes."""
    from detsdk.engine.build import build_model

    return build_model(model, CHECK_NUM_CLASSES)


def covering_detectors(registry: Registry, head: Component) -> list[Component]:
    """Detectors whose default head tables name ``head`` (so their checks build and run it)."""
    covering = []
    for detector in registry.components("detector"):
        try:
            parameters = detector.parameters()
        except Exception:  # a detector that cannot load is reported by its own check
            continue
        for parameter in parameters:
            default = parameter.default
            if isinstance(default, Mapping) and default.get("type") in (head.name, head.qualified_name):
                covering.append(detector)
                break
    return covering


def ground_truth_dataset(registry: Registry, plugin: str, settings: ComponentCheckConfig, config: CheckConfig, folder: Path):
    """The dataset a metric is checked on: the one its table names (built from that dataset's table), else painted images."""
    from detsdk.testing.metrics import PaintedGroundTruth

    if not settings.dataset:
        return PaintedGroundTruth()
    name = settings.dataset if "/" in settings.dataset else f"{plugin}/{settings.dataset}"
    dataset = registry.get("dataset", name, where="check table 'dataset'")
    params = component_params(dataset, config.for_component("dataset", dataset.name), folder / f"dataset-{dataset.name}")
    return dataset.load()(**params)
