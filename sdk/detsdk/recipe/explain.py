"""Where each key of a resolved recipe comes from, and what it shadows (``sdk recipe show --explain``)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from detsdk.recipe.load import Recipe, Shadow

DEFAULT = "(default)"


def explain_recipe(recipe: Recipe, data: Mapping[str, Any] | None = None) -> list[str]:
    """One line per resolved key: ``key = value  <- origin``, then one line per setting it shadows.

    ``data`` is what is shown (e.g. with defaults filled in; keys no file set read ``(default)``);
    it defaults to ``recipe.data``. A shadow of one base by a later base is marked, since that is
    the easy mistake: the recipe's own keys over its bases are what inheritance is for.

    >>> from detsdk.recipe import load_recipe
    >>> explain_recipe(load_recipe({"train": {"epochs": 2}}, ["train.epochs=3"]))[0]
    'train.epochs = 3  <- --set train.epochs=3'
    """
    by_key: dict[str, list[Shadow]] = {}
    for shadow in recipe.shadows:
        by_key.setdefault(shadow.key_path, []).append(shadow)
    folders = _plugin_recipe_folders()
    lines = []
    for key_path, value in _entries(recipe.data if data is None else data, ()):
        if isinstance(value, dict) and key_path not in by_key:
            continue  # a table is listed only when it replaced one (its keys have their own lines)
        shown = "(table)" if isinstance(value, dict) else _compact(value)
        lines.append(f"{key_path} = {shown}  <- {short_origin(recipe.sources.get(key_path, DEFAULT), folders)}")
        for shadow in by_key.get(key_path, []):
            note = "" if shadow.intended else "  (a later base over an earlier one: check the base order)"
            lines.append(f"    shadows {_compact(shadow.shadowed_value)} from {short_origin(shadow.shadowed_origin, folders)}{note}")
    return lines


def unintended_shadows(recipe: Recipe) -> list[Shadow]:
    """The settings of a base that a later base of the same list replaced."""
    return [shadow for shadow in recipe.shadows if not shadow.intended]


def short_origin(origin: str, plugin_folders: Mapping[str, Path]) -> str:
    """A file a plugin ships as ``plugin:relative/path.toml``, a file under the working folder relative to it.

    ``plugin_folders`` maps each plugin to its (resolved) recipe folder.
    """
    path = Path(origin)
    if not path.is_absolute():
        return origin
    path = path.resolve()
    for plugin, folder in plugin_folders.items():
        if path.is_relative_to(folder):
            return f"{plugin}:{path.relative_to(folder)}"
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else origin


def _plugin_recipe_folders() -> dict[str, Path]:
    from detsdk.plugins import get_registry

    return {c.plugin: Path(c.factory).resolve() for c in get_registry().components("recipe")}


def _entries(table: Mapping[str, Any], prefix: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """Every key path in order, a table before its keys."""
    for key, value in table.items():
        key_path = ".".join((*prefix, key))
        yield key_path, value
        if isinstance(value, dict):
            yield from _entries(value, (*prefix, key))


def _compact(value: Any, limit: int = 72) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
