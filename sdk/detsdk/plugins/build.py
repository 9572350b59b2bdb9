"""Build a component from its recipe table: look up ``type``, call the factory with the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detsdk.errors import PluginError


def build_component(kind: str, spec: Mapping[str, Any], where: str = "", **injected: Any) -> Any:
    """Build the ``kind`` component named by ``spec["type"]``.

    ``injected`` are the arguments the caller supplies itself (a neck's
    ``in_channels``, a head's ``num_classes``); recipe keys win over none of
    them, since the validator refuses recipe keys the engine injects.

    >>> build_component("optimizer", {"type": "sgd", "lr": 0.1}, params=model.parameters())  # doctest: +SKIP
    """
    from detsdk.plugins.registry import get_registry

    if not isinstance(spec, Mapping) or "type" not in spec:
        raise PluginError(f"{where or kind}: expected a table with 'type' naming a {kind}, got {spec!r}")
    component = get_registry().get(kind, spec["type"], where=where)
    params = {k: v for k, v in spec.items() if k != "type"}
    return component.load()(**params, **injected)
