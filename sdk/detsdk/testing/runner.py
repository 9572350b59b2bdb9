"""Run the conformance checks over every component a plugin registers (``sdk plugins check``).

Components are built as ``detsdk.testing.build`` says (check table, fixture,
tiny defaults), each checked against its kind's contract by the check
modules; a component that cannot be built is a failed ``build`` check, one
that needs parameters nobody gave is a counted skip.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from detsdk.errors import PluginError, suggest
from detsdk.plugins.registry import KINDS, Component, Registry, get_registry
from detsdk.testing import build
from detsdk.testing.config import CheckConfig, plugin_check_config
from detsdk.testing.data import check_dataset, check_transform
from detsdk.testing.hooks import check_hook
from detsdk.testing.metrics import check_metric
from detsdk.testing.models import check_backbone, check_detector, check_neck
from detsdk.testing.recipes import check_recipes
from detsdk.testing.results import CheckResult, Report, error_text, failed, skipped
from detsdk.testing.training import check_optimizer, check_scheduler


def check_plugin(plugin: str, kinds: Iterable[str] | None = None, config: CheckConfig | None = None,
                 registry: Registry | None = None) -> Report:
    """Check every component ``plugin`` registers (of ``kinds``, singular or plural; default: all).

    ``config`` replaces the plugin's own ``[tool.detsdk.check]`` table.

    >>> check_plugin("toy").ok                                  # doctest: +SKIP
    True
    """
    registry = registry or get_registry()
    if plugin not in registry.plugins:
        raise PluginError(f"no plugin '{plugin}' is loaded{suggest(plugin, registry.plugins)}; "
                          f"loaded: {', '.join(registry.plugins)}")
    wanted = _kinds(kinds)
    report = Report(plugin)
    info = registry.plugins[plugin]
    if info.error:
        report.results.append(failed(f"plugin:{plugin}", "load", info.error))
        return report
    if config is None:
        config = plugin_check_config(plugin, _module_file(registry, plugin))
    with tempfile.TemporaryDirectory(prefix="detsdk-check-") as folder:
        for kind in wanted:
            for component in registry.components(kind):
                if component.plugin == plugin:
                    report.results.extend(check_component(component, config, Path(folder), registry))
    return report


def check_component(component: Component, config: CheckConfig, folder: Path, registry: Registry | None = None) -> list[CheckResult]:
    """Every check of one component's kind; a build that raises is a failed ``build`` check."""
    registry = registry or get_registry()
    label = f"{component.kind}:{component.qualified_name}"
    settings = config.for_component(component.kind, component.name)
    if settings.skip:
        return [skipped(label, "all checks", f"skipped by the check table: {settings.skip}")]
    where = folder / f"{component.kind}-{component.name}"
    try:
        return _CHECKS.get(component.kind, _unknown_kind)(label, component, settings, config, where, registry)
    except build.NeedsParameters as exc:
        return [skipped(label, "build", f"skipped: needs parameters {exc} (add [tool.detsdk.check.{component.kind}."
                        f"{component.name}] with params, or a fixture that writes a small tree)")]
    except Exception as exc:  # the component (or its fixture) raised while being built
        return [failed(label, "build", error_text(exc))]


def _built(check):
    """A kind whose check takes the component built from its parameters (backbone, dataset, transform, hook)."""

    def run(label, component, settings, config, folder, registry):
        params = build.component_params(component, settings, folder)
        return check(label, component.load()(**params))

    return run


def _neck(label, component, settings, config, folder, registry):
    params = build.component_params(component, settings, folder)
    factory = component.load()

    def make(in_channels, out_channels):
        if "out_channels" in params or not build.takes_parameter(component, "out_channels"):
            return factory(in_channels=in_channels, **params), params.get("out_channels")
        return factory(in_channels=in_channels, out_channels=out_channels, **params), out_channels

    return check_neck(label, make)


def _head(label, component, settings, config, folder, registry):
    if settings.model is not None:
        model = dict(settings.model)
        if "type" not in model:
            raise ValueError("the check table's model needs a 'type' naming the detector to check the head in")
        model = {**build.DEFAULT_MODEL, **model}
        return check_detector(f"{label} (in detector {model['type']})", build.build_detector(model), build.CHECK_NUM_CLASSES)
    covering = [d.qualified_name for d in build.covering_detectors(registry, component)]
    if covering:
        return [skipped(label, "all checks", "heads are checked inside detectors: covered by the check of "
                        f"detector:{', detector:'.join(covering)}, which builds it by default (a model table checks it here)")]
    return [skipped(label, "all checks", f"skipped: needs a detector to run in (add [tool.detsdk.check.head.{component.name}] "
                    'model = { type = "<detector>", <head key> = { type = "' + component.name + '" } })')]


def _detector(label, component, settings, config, folder, registry):
    return check_detector(label, build.build_detector(build.detector_model(component, settings)), build.CHECK_NUM_CLASSES)


def _scheduler(label, component, settings, config, folder, registry):
    params = build.component_params(component, settings, folder)
    factory = component.load()
    return check_scheduler(label, lambda optimizer, **sizes: factory(optimizer, **sizes, **params))


def _optimizer(label, component, settings, config, folder, registry):
    params = build.component_params(component, settings, folder)
    factory = component.load()
    return check_optimizer(label, lambda parameters: factory(params=parameters, **params))


def _metric(label, component, settings, config, folder, registry):
    params = build.component_params(component, settings, folder)
    factory = component.load()
    dataset = build.ground_truth_dataset(registry, component.plugin, settings, config, folder)
    return check_metric(label, lambda: factory(**params), dataset)


def _recipe(label, component, settings, config, folder, registry):
    return check_recipes(label, component.plugin, component.factory)


def _unknown_kind(label, component, settings, config, folder, registry):
    return [skipped(label, "all checks", f"the kit has no checks for the kind '{component.kind}'")]


_CHECKS = {
    "backbone": _built(check_backbone), "neck": _neck, "head": _head, "detector": _detector,
    "dataset": _built(check_dataset), "transform": _built(check_transform), "scheduler": _scheduler,
    "optimizer": _optimizer, "metric": _metric, "recipe": _recipe, "hook": _built(check_hook),
}


def _kinds(kinds: Iterable[str] | None) -> list[str]:
    """Singular kinds in registry order; plural and comma-separated forms accepted. ``hook`` only once the registry has it."""
    known = list(KINDS.values())
    if not kinds:
        return known
    wanted = []
    for entry in kinds:
        for kind in (k.strip() for k in entry.split(",")):
            if not kind:
                continue
            singular = KINDS.get(kind, kind)
            if singular not in known:
                raise PluginError(f"--kinds: unknown kind '{kind}'{suggest(kind, known)}; expected some of {', '.join(known)}")
            wanted.append(singular)
    return [k for k in known if k in wanted]


def _module_file(registry: Registry, plugin: str) -> str | None:
    module = registry.plugin_manager.get_plugin(plugin)
    return getattr(module, "__file__", None)
