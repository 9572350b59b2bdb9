"""The registry: which plugin provides which component, loaded lazily.

Built-ins register first, then every ``detsdk`` entry point. A plugin that
fails to import, to validate or to register is isolated: it gets a one-line
warning and an ``error`` in ``sdk plugins``, and the rest keeps working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path

import attrs
import pluggy

from detsdk import hookspecs
from detsdk.errors import PluginError, suggest

# Plural hook suffix -> singular kind used in recipes, errors and `sdk list`.
KINDS = {
    "backbones": "backbone",
    "necks": "neck",
    "heads": "head",
    "detectors": "detector",
    "datasets": "dataset",
    "transforms": "transform",
    "schedulers": "scheduler",
    "optimizers": "optimizer",
    "metrics": "metric",
    "hooks": "hook",
    "recipes": "recipe",
}
BUILTIN_PLUGIN = "detsdk"


@attrs.define
class Component:
    """One named thing a plugin provides: a factory (or lazy ``module:attr``) and who made it."""

    kind: str
    name: str
    plugin: str
    version: str
    factory: Callable | str
    description: str = ""

    @property
    def qualified_name(self) -> str:
        """``<plugin>/<name>``, unique across plugins."""
        return f"{self.plugin}/{self.name}"

    def load(self) -> Callable:
        """Return the factory, importing a ``"module:attr"`` string on first use."""
        if isinstance(self.factory, str):
            self.factory = import_string(self.factory, owner=self.qualified_name)
        return self.factory

    def parameters(self) -> list[inspect.Parameter]:
        """The factory's keyword parameters: the component's recipe schema."""
        signature = inspect.signature(self.load())
        return [
            p
            for p in signature.parameters.values()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]

    def accepts_any_keyword(self) -> bool:
        """True when the factory takes ``**kwargs`` (the validator then accepts any key)."""
        signature = inspect.signature(self.load())
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


@attrs.define
class PluginInfo:
    """What ``sdk plugins`` shows for one plugin."""

    name: str
    version: str
    distribution: str = ""  # what pip installs and uninstalls, e.g. det-plugin-cityscapes
    hooks: list[str] = attrs.Factory(list)
    components: list[str] = attrs.Factory(list)
    error: str | None = None


def import_string(target: str, owner: str = "") -> Callable:
    """Import ``"package.module:attr"`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"{owner}: cannot import '{target}': {exc}") from exc
    return obj


class Registry:
    """Components by kind and name, built once from every loaded plugin."""

    def __init__(self, load_entry_points: bool = True):
        self.plugin_manager = pluggy.PluginManager("detsdk")
        self.plugin_manager.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._components: dict[str, dict[str, list[Component]]] = {kind: {} for kind in KINDS.values()}
        from detsdk import __version__
        from detsdk.builtin import plugin as builtin_plugin

        self.add_plugin(BUILTIN_PLUGIN, __version__, lambda: builtin_plugin, distribution="det-sdk")
        if load_entry_points:
            for entry_point in _selected_entry_points():
                metadata = entry_point.dist.metadata if entry_point.dist else {}  # parsed once: it is not cached
                version, distribution = metadata.get("Version", "?"), metadata.get("Name", "")
                self.add_plugin(entry_point.name, version, entry_point.load, distribution=distribution)

    # -- loading ----------------------------------------------------------
    def add_plugin(
        self, name: str, version: str, load: Callable[[], object], distribution: str = ""
    ) -> PluginInfo:
        """Register the plugin that ``load()`` returns (a module or object with hook functions).

        Entry points come through here, with the ``distribution`` that installed them;
        apps and tests may add a plugin object directly.
        """
        info = PluginInfo(name=name, version=version, distribution=distribution)
        self.plugins[name] = info
        try:
            module = load()
            self.plugin_manager.register(module, name=name)
            try:
                self.plugin_manager.check_pending()
            except pluggy.PluginValidationError:
                self.plugin_manager.unregister(name=name)
                raise
            info.hooks = sorted(
                hook.name for hook in self.plugin_manager.get_hookcallers(module) or []
            )
            self._call_register_hooks(name, version, info)
        except Exception as exc:  # isolate any plugin failure; strict mode re-raises
            self._isolate(name, info, exc)
        return info

    def _call_register_hooks(self, name: str, version: str, info: PluginInfo) -> None:
        added: list[Component] = []
        for plural, kind in KINDS.items():
            hook_caller = getattr(self.plugin_manager.hook, f"detsdk_register_{plural}")
            implementations = [i for i in hook_caller.get_hookimpls() if i.plugin_name == name]
            if not implementations:
                continue

            def register(component_name, factory, *, description="", _kind=kind):
                if not isinstance(component_name, str) or not component_name:
                    raise PluginError(f"plugin '{name}' registered a {_kind} without a name")
                added.append(Component(_kind, component_name, name, version, factory, description))

            implementations[0].function(register=register)
        for component in added:
            self._components[component.kind].setdefault(component.name, []).append(component)
            info.components.append(f"{component.kind}:{component.name}")

    def _isolate(self, name: str, info: PluginInfo, exc: Exception) -> None:
        info.error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        if name in self.plugin_manager.list_name_plugin() and self.plugin_manager.get_plugin(name):
            self.plugin_manager.unregister(name=name)
        if os.environ.get("DETSDK_STRICT_PLUGINS", "") not in ("", "0"):
            raise PluginError(f"plugin '{name}' failed to load: {info.error}") from exc
        print(f"warning: plugin '{name}' failed to load and is disabled: {info.error}", file=sys.stderr)

    # -- lookup -----------------------------------------------------------
    def components(self, kind: str) -> list[Component]:
        """Every component of ``kind`` (singular, e.g. ``"backbone"``), sorted by name."""
        by_name = self._components[kind]
        return [c for name in sorted(by_name) for c in by_name[name]]

    def get(self, kind: str, name: str, where: str = "") -> Component:
        """Resolve a short or ``plugin/name`` qualified name, with suggestions and clash reports."""
        if not isinstance(name, str):
            raise PluginError(f"{where}: expected a {kind} name (a string), got {name!r}")
        by_name = self._components[kind]
        location = f"{where}: " if where else ""
        if "/" in name:
            plugin, _, short = name.partition("/")
            for component in by_name.get(short, []):
                if component.plugin == plugin:
                    return component
            known = [c.qualified_name for cs in by_name.values() for c in cs]
            raise PluginError(f"{location}unknown {kind} '{name}'{suggest(name, known)}")
        providers = by_name.get(name, [])
        if not providers:
            hint = suggest(name, by_name)
            if not hint:
                hint = f"; known: {', '.join(sorted(by_name)) or 'none'}"
            raise PluginError(f"{location}unknown {kind} '{name}'{hint}")
        if len(providers) > 1:
            listed = ", ".join(f"{c.qualified_name} ({self.installed_as(c.plugin)})" for c in providers)
            raise PluginError(
                f"{location}{kind} '{name}' is provided by several plugins: {listed}; "
                "use a qualified name, or pip uninstall the distribution you do not want"
            )
        return providers[0]

    def installed_as(self, plugin: str) -> str:
        """The distribution and version that provide ``plugin``, as pip names them (``det-plugin-voc 0.1.0``)."""
        info = self.plugins[plugin]
        return f"{info.distribution or info.name} {info.version}"

    def call_hook(self, hook_name: str, **kwargs) -> list:
        """Call an event or command hook on every loaded plugin."""
        return getattr(self.plugin_manager.hook, hook_name)(**kwargs)

    def recipe_path(self, reference: str, where: str = "") -> Path:
        """Resolve ``plugin:relative/path.toml`` to the file a plugin ships."""
        plugin, _, relative = reference.partition(":")
        folders = [Path(c.factory) for c in self.components("recipe") if c.plugin == plugin]
        if not folders:
            raise PluginError(
                f"{where}: no plugin '{plugin}' ships recipes (in '{reference}')"
                f"{suggest(plugin, {c.plugin for c in self.components('recipe')})}"
            )
        for folder in folders:
            if (folder / relative).is_file():
                return folder / relative
        known = [str(p.relative_to(f)) for f in folders for p in f.rglob("*.toml")]
        raise PluginError(f"{where}: plugin '{plugin}' ships no recipe '{relative}'{suggest(relative, known)}")


def _selected_entry_points() -> list[importlib.metadata.EntryPoint]:
    """Entry points of group ``detsdk``, filtered by ``DETSDK_LOAD_PLUGINS``."""
    entry_points = list(importlib.metadata.entry_points(group="detsdk"))
    wanted = os.environ.get("DETSDK_LOAD_PLUGINS")
    if wanted is None:
        return entry_points
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    return [ep for ep in entry_points if ep.name in names]


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use (never at ``import detsdk``)."""
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry


def reset_registry() -> None:
    """Forget the registry so the next ``get_registry()`` rediscovers plugins (tests use this)."""
    global _registry
    _registry = None
