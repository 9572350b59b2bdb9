"""Recipe data as TOML in the style of the shipped recipes: components and arrays inline, pipelines one step a line.

``detsdk.recipe.dump_recipe`` (tomli_w) writes every array item on its own line; a converted
recipe is meant to be read and edited, so it is written compactly. ``tomllib.loads`` of the
text gives the data back unchanged.

    >>> print(recipe_toml({"model": {"type": "fcos", "backbone": {"type": "resnet", "depth": 50}}}))
    [model]
    type = "fcos"
    backbone = { type = "resnet", depth = 50 }
    <BLANKLINE>
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

INLINE_WIDTH = 100
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def recipe_toml(data: dict[str, Any]) -> str:
    """TOML text for ``data`` (nested tables, arrays, strings, numbers and booleans)."""
    lines: list[str] = []
    for key, value in data.items():
        if not isinstance(value, dict):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            _table(lines, _key(key), value)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(lines: list[str], name: str, table: dict[str, Any]) -> None:
    """``[name]`` with its plain keys; nested tables inline when short, else as their own sections."""
    lines += ["", f"[{name}]"]
    sections = []
    for key, value in table.items():
        if isinstance(value, dict):
            text = f"{_key(key)} = {_value(value)}"
            if len(text) <= INLINE_WIDTH and not any(isinstance(v, (dict, list)) and _nested(v) for v in value.values()):
                lines.append(text)
            else:
                sections.append((key, value))
        elif _is_table_array(value):
            lines.append(f"{_key(key)} = {_table_array(value, '')}")
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in sections:
        _table(lines, f"{name}.{_key(key)}", value)


def _table_array(items: list[dict[str, Any]], indent: str) -> str:
    """An array of inline tables, one a line; arrays of tables inside them nest the same way."""
    rows = []
    for item in items:
        parts = [f"{_key(k)} = {_table_array(v, indent + '  ') if _is_table_array(v) else _value(v)}"
                 for k, v in item.items()]
        rows.append(f"{indent}  {{ {', '.join(parts)} }},")
    return "[\n" + "\n".join(rows) + f"\n{indent}]"


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _nested(value: Any) -> bool:
    return any(isinstance(v, dict) for v in (value.values() if isinstance(value, dict) else value))


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as TOML")
