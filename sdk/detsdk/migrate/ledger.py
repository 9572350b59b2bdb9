"""What a config conversion read, what it could not carry over and why: every key is accounted for.

A ``Node`` is one config dict at a key path; reading a key through it marks that path as
used. ``Ledger.leftovers`` then lists every leaf no mapping read, so nothing is dropped
without a line saying so.
"""

from __future__ import annotations

from typing import Any

import attrs

from detsdk.errors import DetSDKError

_MISSING = object()
NOT_READ = "not read: det-sdk has no counterpart"


class UnsupportedConfigError(DetSDKError):
    """A config whose model (or another part) det-sdk cannot build, or a --strict conversion with gaps."""


@attrs.define(frozen=True)
class Unmapped:
    """A config key that is not in the recipe, with the reason."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@attrs.define
class Ledger:
    """Key paths read, keys not carried over (with reasons) and notes on approximate mappings."""

    used: set[str] = attrs.Factory(set)
    unmapped: list[Unmapped] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)

    def use(self, path: str) -> None:
        """Mark ``path`` (and everything under it) as read."""
        self.used.add(path)

    def skip(self, path: str, reason: str) -> None:
        """Record ``path`` as not carried over, with why."""
        self.used.add(path)
        if not any(u.path == path for u in self.unmapped):
            self.unmapped.append(Unmapped(path, reason))

    def note(self, message: str) -> None:
        """A mapping that is close but not exact (said once)."""
        if message not in self.notes:
            self.notes.append(message)

    def is_used(self, path: str) -> bool:
        """Whether ``path`` or a parent of it was read."""
        while path:
            if path in self.used:
                return True
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return False

    def leftovers(self, value: Any, path: str) -> None:
        """Record every leaf under ``path`` that nothing read."""
        if self.is_used(path):
            return
        if isinstance(value, dict) and value:
            for key, item in value.items():
                self.leftovers(item, f"{path}.{key}")
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            for index, item in enumerate(value):
                self.leftovers(item, f"{path}[{index}]")
        elif value is not None and value != [] and value != {}:  # an empty list or dict sets nothing
            self.skip(path, NOT_READ)


@attrs.define
class Node:
    """A config dict at ``path``; reading a key marks it used in the ledger."""

    ledger: Ledger
    path: str
    value: dict[str, Any]

    def at(self, key: str | int) -> str:
        """The key path of ``key`` under this node."""
        return f"{self.path}[{key}]" if isinstance(key, int) else f"{self.path}.{key}" if self.path else key

    def __contains__(self, key: str) -> bool:
        return key in self.value

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (``default`` when absent), marked as read."""
        if key in self.value:
            self.ledger.use(self.at(key))
            return self.value[key]
        return default

    def peek(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` without marking it read."""
        return self.value.get(key, default)

    def child(self, key: str) -> Node | None:
        """The nested dict at ``key`` as a ``Node`` (None when absent or not a dict); nothing is marked."""
        value = self.value.get(key)
        return Node(self.ledger, self.at(key), value) if isinstance(value, dict) else None

    def items(self, key: str) -> list[Node]:
        """The dicts of the list at ``key``, each a ``Node`` (non-dict items are recorded as unmapped)."""
        value = self.value.get(key) or []
        if isinstance(value, dict):
            return [Node(self.ledger, self.at(key), value)]
        nodes = []
        for index, item in enumerate(value):
            path = f"{self.at(key)}[{index}]"
            if isinstance(item, dict):
                nodes.append(Node(self.ledger, path, item))
            else:
                self.ledger.skip(path, f"expected a dict, got {item!r}")
        if not nodes:
            self.ledger.use(self.at(key))
        return nodes

    def ignore(self, *keys: str) -> None:
        """Mark keys as read that need nothing in a recipe (det-sdk derives or always does them)."""
        for key in keys:
            if key in self.value:
                self.ledger.use(self.at(key))

    def skip(self, key: str, reason: str) -> None:
        """Record ``key`` as not carried over (when present), with why."""
        if key in self.value:
            self.ledger.skip(self.at(key), reason)

    def expect(self, key: str, wanted: Any, reason: str) -> None:
        """Read ``key``; a value other than ``wanted`` (absent counts as wanted) is recorded as unmapped."""
        if key in self.value:
            value = self.value[key]
            if _same(value, wanted):
                self.ledger.use(self.at(key))
            else:
                self.ledger.skip(self.at(key), f"{value!r}: {reason}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def type_of(node: Node | None) -> str:
    """The ``type`` of a config dict, marked as read (``""`` when absent)."""
    return str(node.get("type", "")) if node is not None else ""
