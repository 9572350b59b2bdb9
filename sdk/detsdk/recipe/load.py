"""Load a recipe: TOML, ``base`` inheritance, ``replace = true`` and ``--set`` overrides.

Every key remembers the file (or ``--set``) that gave it its value, so that
errors can name where a wrong value came from, and every replaced value is
kept as a ``Shadow`` (``sdk recipe show --explain`` prints both).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from detsdk.errors import RecipeError


@attrs.frozen
class Shadow:
    """A value set in ``shadowed_origin`` that a later setting in ``origin`` replaced.

    ``intended`` is true when the replacing setting is a recipe's own key over its
    bases (``replace = true`` included) or a ``--set``; false when a later base
    replaced what an earlier base of the same list set (an easy mistake to miss;
    MMEngine refuses a top-level key that two bases share).
    """

    key_path: str
    origin: str
    shadowed_origin: str
    shadowed_value: Any
    intended: bool


@attrs.define
class Recipe:
    """A resolved recipe: plain data, where each key path came from, and which settings were shadowed."""

    data: dict[str, Any]
    path: Path | None = None
    sources: dict[str, str] = attrs.Factory(dict)
    shadows: list[Shadow] = attrs.Factory(list)

    def source_of(self, key_path: str) -> str:
        """The file (or ``--set``) that set ``key_path`` or its nearest parent."""
        parts = key_path.split(".")
        while parts:
            found = self.sources.get(".".join(parts))
            if found:
                return found
            parts.pop()
        return str(self.path) if self.path else "<recipe>"

    @property
    def stem(self) -> str:
        """The recipe's file name without suffix (``recipe`` for a dict recipe)."""
        return self.path.stem if self.path else "recipe"


def load_recipe(source: str | Path | Mapping, overrides: Iterable[str] | Mapping[str, Any] = ()) -> Recipe:
    """Load a recipe file, a ``plugin:path.toml`` a plugin ships, or a dict; resolve ``base``; apply overrides.

    ``overrides`` are ``"key.path=value"`` strings (as ``--set``) or a dict of key paths to values.

    >>> load_recipe({"train": {"epochs": 2}}, ["train.epochs=3"]).data["train"]["epochs"]
    3
    >>> load_recipe({"train": {"epochs": 2}}, {"train.epochs": 1}).data["train"]["epochs"]
    1
    """
    sources: dict[str, str] = {}
    shadows: list[Shadow] = []
    if isinstance(source, Mapping):
        data = _resolve(dict(copy.deepcopy(source)), None, sources, (), shadows)
        path = None
    else:
        path = _locate_base(str(source), None) if _is_plugin_reference(str(source)) else Path(source)
        data = _resolve(_read_toml(path), path, sources, (path.resolve(),), shadows)
    if isinstance(overrides, Mapping):
        pairs = [(_checked_key_path(str(k), f"overrides[{k!r}]"), copy.deepcopy(v), f"overrides[{k!r}]")
                 for k, v in overrides.items()]
    else:
        pairs = [(*parse_override(override), f"--set {override}") for override in overrides]
    for key_path, value, origin in pairs:
        previous = _set_key(data, key_path, value)
        if previous is not _UNSET and previous != value:
            shadows.append(Shadow(key_path, origin, sources.get(key_path, "?"), previous, True))
        sources[key_path] = origin
    return Recipe(data=data, path=path, sources=sources, shadows=shadows)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value``; the value is parsed as TOML, else kept as a string."""
    key_path, sep, raw = text.partition("=")
    if not sep:
        raise RecipeError(f"--set '{text}': expected KEY.PATH=VALUE, e.g. train.epochs=12")
    key_path = _checked_key_path(key_path.strip(), f"--set '{text}'")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # bare words such as runs/exp1 need no quotes
    return key_path, value


def _checked_key_path(key_path: str, where: str) -> str:
    if not key_path or any(not part for part in key_path.split(".")):
        raise RecipeError(f"{where}: expected KEY.PATH=VALUE, e.g. train.epochs=12")
    return key_path


def dump_recipe(data: Mapping) -> str:
    """The recipe as TOML text (what ``sdk recipe show`` prints and work dirs keep)."""
    import tomli_w

    return tomli_w.dumps(dict(data))


def _read_toml(path: Path) -> dict:
    if not path.exists():
        raise RecipeError(f"recipe not found: {path}")
    if path.suffix == ".py":
        raise RecipeError(f"{path}: a Python file is not a recipe; recipes are TOML data (.toml), never code")
    if path.is_dir():
        raise RecipeError(f"{path}: is a folder; expected a recipe .toml file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a text file; expected a recipe .toml file") from None


def _resolve(data: dict, path: Path | None, sources: dict, chain: tuple[Path, ...], shadows: list) -> dict:
    """Merge a recipe's bases (left to right), then the recipe itself over them."""
    bases = data.pop("base", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise RecipeError(f"{path or '<recipe>'}: key 'base': expected a list of recipe paths")
    merged: dict = {}
    for base in bases:
        base_sources: dict[str, str] = {}  # each key keeps the file that set it, however deep the base
        base_path = _locate_base(base, path)
        if base_path.resolve() in chain:
            cycle = " -> ".join(str(p) for p in (*chain, base_path.resolve()))
            raise RecipeError(f"circular inheritance: {cycle}")
        if not base_path.exists():
            raise RecipeError(f"{path or '<recipe>'}: base recipe not found: {base} (looked at {base_path})")
        base_data = _resolve(_read_toml(base_path), base_path, base_sources, (*chain, base_path.resolve()), shadows)
        merged = _merge(merged, base_data, str(base_path), sources, (), base_sources, _Shadowing(shadows, False))
    return _merge(merged, data, str(path) if path else "<recipe>", sources, (), {}, _Shadowing(shadows, True))


def _is_plugin_reference(reference: str) -> bool:
    return ":" in reference and not Path(reference).exists()


def _locate_base(base: str, path: Path | None) -> Path:
    if _is_plugin_reference(base):
        from detsdk.plugins import get_registry

        return get_registry().recipe_path(base, where=str(path or "<recipe>"))
    folder = path.parent if path else Path.cwd()
    return folder / base


@attrs.frozen
class _Shadowing:
    """Where ``_merge`` records replaced values, and whether this merge's replacements are intended."""

    shadows: list
    intended: bool

    def record(self, key_path: str, origin: str, sources: Mapping[str, str], old: Any, new: Any) -> None:
        if key_path in sources and old != new:
            self.shadows.append(Shadow(key_path, origin, sources[key_path], old, self.intended))


def _merge(
    into: dict,
    update: dict,
    origin: str,
    sources: dict,
    prefix: tuple,
    update_sources: Mapping[str, str],
    shadowing: _Shadowing,
) -> dict:
    """Tables merge recursively; scalars and arrays replace; ``replace = true`` drops the inherited table.

    Keys of ``update`` are recorded as set by ``origin``, or by ``update_sources[key]`` when that names it;
    a value they replace is recorded in ``shadowing``.
    """
    result = dict(into)
    for key, value in update.items():
        key_path = ".".join((*prefix, key))
        key_origin = update_sources.get(key_path, origin)
        if isinstance(value, dict):
            value = dict(value)
            replace = value.pop("replace", False) is True
            inherited = result.get(key)
            if replace or not isinstance(inherited, dict):
                shadowing.record(key_path, key_origin, sources, inherited, value)
                for stale in [k for k in sources if k.startswith(key_path + ".")]:
                    del sources[stale]
                result[key] = _merge({}, value, origin, sources, (*prefix, key), update_sources, shadowing)
            else:
                result[key] = _merge(inherited, value, origin, sources, (*prefix, key), update_sources, shadowing)
        else:
            shadowing.record(key_path, key_origin, sources, result.get(key), value)
            result[key] = copy.deepcopy(value)
        sources[key_path] = key_origin
    return result


_UNSET = object()


def _set_key(data: dict, key_path: str, value: Any) -> Any:
    """Set ``a.b.c`` in ``data``; returns the value it replaced (``_UNSET`` when there was none)."""
    node = data
    parts = key_path.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise RecipeError(f"--set {key_path}: '{where}' is a value, not a table")
        node = child
    previous = node.get(parts[-1], _UNSET)
    node[parts[-1]] = value
    return previous
