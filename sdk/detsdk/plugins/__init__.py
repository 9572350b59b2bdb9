"""Plugin discovery and the component registry."""

from detsdk.plugins.registry import KINDS, Component, PluginInfo, Registry, get_registry, reset_registry

__all__ = ["KINDS", "Component", "PluginInfo", "Registry", "get_registry", "reset_registry"]
