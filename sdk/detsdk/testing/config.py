"""The ``[tool.detsdk.check]`` table: parameters, fixtures and skips for ``sdk plugins check``.

A plugin's ``pyproject.toml`` may say how to build each component for the kit,
one table per component, keyed by kind and name::

    [tool.detsdk.check.backbone.toy_convnet]
    params = { width = 8 }                           # the factory's keyword arguments
    [tool.detsdk.check.dataset.voc]
    fixture = "det_plugin_voc.check_fixture:tiny_tree"  # fixture(folder) -> more params (files it wrote)
    params = { split = "trainval" }
    [tool.detsdk.check.detector.my_rcnn]
    model = { backbone = { type = "resnet", depth = 18 }, neck = { type = "fpn", out_channels = 32 } }
    [tool.detsdk.check.metric.cityscapes]
    dataset = "cityscapes"                           # ground truth from this dataset (its own check table)
    [tool.detsdk.check.transform.mosaic]
    skip = "needs extra samples from the loader"     # shown and counted as skipped

``model`` (detectors and heads) is the recipe's ``[model]`` table that the
component is checked inside. The table is read from the ``pyproject.toml``
of the distribution that provides the plugin (found next to its sources, or
through an editable install's ``direct_url.json``), or from a file passed
with ``sdk plugins check --config``.
"""

from __future__ import annotations

import importlib.metadata
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import attrs

from detsdk.errors import PluginError
from detsdk.plugins.registry import BUILTIN_PLUGIN

KEYS = ("params", "fixture", "model", "dataset", "skip")


@attrs.frozen
class ComponentCheckConfig:
    """How to build one component for its checks (see the module docstring)."""

    params: dict[str, Any] = attrs.Factory(dict)
    fixture: str = ""
    model: dict[str, Any] | None = None
    dataset: str = ""
    skip: str = ""


@attrs.frozen
class CheckConfig:
    """Every component's table, and the file they came from (``""``: none)."""

    components: dict[tuple[str, str], ComponentCheckConfig] = attrs.Factory(dict)
    source: str = ""

    def for_component(self, kind: str, name: str) -> ComponentCheckConfig:
        """The table for ``kind`` ``name`` (empty: build with the defaults)."""
        return self.components.get((kind, name), ComponentCheckConfig())

    def has(self, kind: str, name: str) -> bool:
        """True when the configuration has a table for this component."""
        return (kind, name) in self.components


def parse_check_table(table: Mapping[str, Any], source: str) -> CheckConfig:
    """A ``[tool.detsdk.check]`` table (kind -> name -> settings) as a ``CheckConfig``."""
    components = {}
    for kind, by_name in table.items():
        if not isinstance(by_name, Mapping):
            raise PluginError(f"{source}: tool.detsdk.check.{kind}: expected a table of components by name")
        for name, settings in by_name.items():
            where = f"{source}: tool.detsdk.check.{kind}.{name}"
            if not isinstance(settings, Mapping):
                raise PluginError(f"{where}: expected a table with some of {', '.join(KEYS)}")
            unknown = sorted(set(settings) - set(KEYS))
            if unknown:
                raise PluginError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(KEYS)}")
            if not isinstance(settings.get("params", {}), Mapping):
                raise PluginError(f"{where}.params: expected a table of the factory's keyword arguments")
            components[(kind, name)] = ComponentCheckConfig(
                params=dict(settings.get("params", {})),
                fixture=str(settings.get("fixture", "")),
                model=dict(settings["model"]) if "model" in settings else None,
                dataset=str(settings.get("dataset", "")),
                skip=str(settings.get("skip", "")),
            )
    return CheckConfig(components, source)


def read_check_file(path: str | Path) -> CheckConfig:
    """``[tool.detsdk.check]`` of a TOML file (a ``pyproject.toml`` or a file with only that table)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PluginError(f"{path}: cannot read the check configuration: {exc}") from exc
    return parse_check_table(data.get("tool", {}).get("detsdk", {}).get("check", {}), str(path))


def plugin_check_config(plugin: str, module_file: str | None) -> CheckConfig:
    """The check configuration of the distribution that provides ``plugin`` (empty when it has none)."""
    pyproject = find_pyproject(plugin, module_file)
    return read_check_file(pyproject) if pyproject is not None else CheckConfig()


def find_pyproject(plugin: str, module_file: str | None) -> Path | None:
    """The ``pyproject.toml`` of ``plugin``'s distribution: above its hooks module, or at an editable install's source."""
    distribution = _distribution_of(plugin)
    if distribution is not None:
        wanted = _normalised(distribution.metadata["Name"])
    else:  # the built-in plugin (det-sdk itself), or one an app or test added directly
        wanted = "det-sdk" if plugin == BUILTIN_PLUGIN else None
    if module_file:
        for folder in Path(module_file).resolve().parents:
            candidate = folder / "pyproject.toml"
            if candidate.is_file() and (wanted is None or _project_name(candidate) == wanted):
                return candidate
    if distribution is not None:
        text = distribution.read_text("direct_url.json")
        if text:
            url = json.loads(text).get("url", "")
            if url.startswith("file://"):
                candidate = Path(unquote(urlparse(url).path)) / "pyproject.toml"
                if candidate.is_file():
                    return candidate
    return None


def _distribution_of(plugin: str) -> importlib.metadata.Distribution | None:
    if plugin == BUILTIN_PLUGIN:
        try:
            return importlib.metadata.distribution("det-sdk")
        except importlib.metadata.PackageNotFoundError:
            return None
    for entry_point in importlib.metadata.entry_points(group="detsdk"):
        if entry_point.name == plugin and entry_point.dist is not None:
            return entry_point.dist
    return None


def _project_name(pyproject: Path) -> str | None:
    try:
        name = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return _normalised(name) if isinstance(name, str) else None


def _normalised(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
