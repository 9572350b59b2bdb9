"""Read an MMDetection 2.x or 3.x config as data, with Python's ``ast``: nothing in it is run.

What is understood is what configs are made of: literals, ``dict(...)`` (with ``**name``),
lists and tuples, arithmetic on literals, names assigned earlier in the same file,
``_base_`` (one path or a list, relative to the file), ``{{_base_.x}}`` and ``_base_.x``,
``_delete_=True``, and MMEngine's pure-Python style: ``with read_base():`` (or ``if
'_base_':``) around ``from .._base_.x import *``, ``from mmdet.models import FasterRCNN``
(the class name is kept as a string, nothing is imported) and ``name.merge(dict(...))``.
Anything else (another call, an ``import``, a ``def``, an attribute of something that is not
a config dict) is refused with a ``ConfigReadError`` naming the file and line.

    >>> read_config("configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py").data["model"]["type"]  # doctest: +SKIP
    'FasterRCNN'
"""

from __future__ import annotations

import ast
import copy
import operator
import re
from pathlib import Path
from typing import Any

import attrs

from detsdk.errors import DetSDKError

# Packages whose class names pure-Python configs bind with ``from X import Name`` (never imported).
TYPE_PACKAGES = ("mmdet", "mmcv", "mmengine", "torch", "mmpretrain", "mmcls")
_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_BASE_REFERENCE = re.compile(r"^\{\{\s*_base_\.([\w.]+)\s*\}\}$")
DELETE = "_delete_"
MAX_REPEAT = 100_000  # the longest string or list `x * n` may make: a config cannot exhaust memory


class ConfigReadError(DetSDKError):
    """A config that cannot be read as data (it would need code to run), or is not found."""


@attrs.define
class MMDetConfig:
    """An MMDetection config as plain data: ``data`` (top-level names -> values), ``files`` read (bases first)."""

    path: Path
    data: dict[str, Any]
    files: list[Path] = attrs.Factory(list)


def read_config(path: str | Path) -> MMDetConfig:
    """Read an MMDetection config file and its bases as data; raise ``ConfigReadError`` on anything else."""
    path = Path(path)
    files: list[Path] = []
    data = _read_file(path, files, ())
    return MMDetConfig(path=path, data=strip_delete(data), files=files)


def merge_config(base: Any, update: Any) -> Any:
    """MMEngine's merge: dicts merge key by key unless the update says ``_delete_=True``; the rest replaces."""
    if not isinstance(update, dict) or not isinstance(base, dict) or update.get(DELETE):
        return copy.deepcopy(update)
    merged = copy.deepcopy(base)
    for key, value in update.items():
        merged[key] = merge_config(merged.get(key), value) if key in merged else copy.deepcopy(value)
    return merged


def strip_delete(value: Any) -> Any:
    """The value without ``_delete_`` markers (they only steer merging)."""
    if isinstance(value, dict):
        return {k: strip_delete(v) for k, v in value.items() if k != DELETE}
    if isinstance(value, list):
        return [strip_delete(v) for v in value]
    return value


def _read_file(path: Path, files: list[Path], chain: tuple[Path, ...]) -> dict[str, Any]:
    resolved = path.resolve()
    if resolved in chain:
        raise ConfigReadError(f"{path}: inherits from itself through {' -> '.join(str(p) for p in chain)}")
    if not path.is_file():
        raise ConfigReadError(f"config not found: {path}")
    if path.suffix != ".py":
        raise ConfigReadError(f"{path}: expected an MMDetection config .py file")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (RecursionError, MemoryError):
        raise ConfigReadError(f"{path}: nested too deeply to read") from None
    except UnicodeDecodeError:
        raise ConfigReadError(f"{path}: not a UTF-8 text file") from None
    except SyntaxError as exc:
        raise ConfigReadError(f"{path}:{exc.lineno}: not valid Python: {exc.msg}") from None
    reader = _FileReader(path, files, chain + (resolved,))
    try:
        reader.read(tree)
    except RecursionError:
        raise ConfigReadError(f"{path}: expressions nested too deeply to read") from None
    files.append(path)
    return reader.result()


class _FileReader:
    """One file's top-level statements, evaluated as data in order."""

    def __init__(self, path: Path, files: list[Path], chain: tuple[Path, ...]):
        self.path, self.files, self.chain = path, files, chain
        self.names: dict[str, Any] = {}  # what later statements of this file see
        self.base: dict[str, Any] = {}  # the merged ``_base_`` files (2.x style)
        self.own: dict[str, Any] = {}  # this file's assignments, merged over ``base``
        self.types: set[str] = set()  # names bound to class names by ``from X import Name``
        self.pure_python = False  # MMEngine's read_base() style: a plain assignment replaces the base's value

    def refuse(self, node: ast.AST, what: str) -> ConfigReadError:
        """The error for a construct that would need code to run."""
        return ConfigReadError(
            f"{self.path}:{getattr(node, 'lineno', '?')}: {what}; an MMDetection config is read as data, "
            "never run (write the value out as a literal)"
        )

    def read(self, tree: ast.Module) -> None:
        """Evaluate every top-level statement; ``_base_`` is read first, wherever it is assigned."""
        for node in tree.body:
            if isinstance(node, ast.Assign) and _target_names(node) == ["_base_"]:
                self.read_bases(node)
        for index, node in enumerate(tree.body):
            if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # a docstring
            self.statement(node)

    def read_bases(self, node: ast.Assign) -> None:
        value = self.expression(node.value)
        paths = [value] if isinstance(value, str) else value
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise self.refuse(node, "_base_ must be a path or a list of paths")
        for relative in paths:
            self.base = merge_config(self.base, _read_file(self.path.parent / relative, self.files, self.chain))

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Assign):
            names = _target_names(node)
            if names is None and len(node.targets) == 1 and self.assign_item(node.targets[0], node.value):
                return
            if names is None:
                raise self.refuse(node, "an assignment to something other than a name")
            if names == ["_base_"]:
                return
            value = self.expression(node.value)
            for name in names:
                self.assign(name, value)
        elif isinstance(node, ast.With) and _is_read_base(node):
            for inner in node.body:
                self.base_import(inner)
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Constant) and node.test.value == "_base_":
            for inner in node.body:
                self.base_import(inner)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_type_module(node.module):
            for alias in node.names:
                if alias.name == "*":
                    raise self.refuse(node, f"'from {node.module} import *'")
                self.names[alias.asname or alias.name] = alias.name
                self.types.add(alias.asname or alias.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            raise self.refuse(node, "an import")
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and self.merge_call(node.value):
            return
        elif isinstance(node, ast.Pass):
            return
        else:
            raise self.refuse(node, f"a '{type(node).__name__}' statement")

    def assign(self, name: str, value: Any) -> None:
        self.names[name] = value
        self.own[name] = merge_config(self.own[name], value) if name in self.own else value
        self.types.discard(name)

    def assign_item(self, target: ast.expr, value_node: ast.expr) -> bool:
        """``_base_.a.b = value`` (MMEngine changes the inherited value) or ``name.a.b = value``."""
        chain = _attribute_chain(target)
        if not chain or len(chain) < 2:
            return False
        root, *keys = chain
        if root == "_base_":
            holder = self.base
        elif isinstance(self.names.get(root), dict):
            holder = self.names[root]
        else:
            return False
        value = self.expression(value_node)
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(holder.get(key), dict):
                raise self.refuse(target, f"{root}.{'.'.join(keys[:depth + 1])} is not a config dict")
            holder = holder[key]
        holder[keys[-1]] = value
        if root != "_base_" and root in self.own:
            self.own[root] = copy.deepcopy(self.names[root])
        return True

    def base_import(self, node: ast.stmt) -> None:
        """``from .._base_.models.x import *`` inside ``read_base()``: the base file's names, here."""
        if not (isinstance(node, ast.ImportFrom) and node.level > 0 and [a.name for a in node.names] == ["*"]):
            raise self.refuse(node, "inside read_base() only 'from .relative.module import *' is read")
        folder = self.path.parent
        for _ in range(node.level - 1):
            folder = folder.parent
        target = folder.joinpath(*(node.module or "").split(".")).with_suffix(".py")
        values = _read_file(target, self.files, self.chain)
        self.pure_python = True
        for name, value in values.items():
            self.names[name] = value
            self.base[name] = value

    def merge_call(self, call: ast.Call) -> bool:
        """``name.merge(dict(...))`` / ``name.update(...)`` on a config dict: merged as data."""
        func = call.func
        if not (isinstance(func, ast.Attribute) and func.attr in ("merge", "update") and isinstance(func.value, ast.Name)):
            return False
        name = func.value.id
        current = self.names.get(name)
        if not isinstance(current, dict) or call.args and len(call.args) != 1:
            raise self.refuse(call, f"'{name}.{func.attr}(...)' on something that is not a config dict")
        update = self.expression(call.args[0]) if call.args else {}
        for keyword in call.keywords:
            if keyword.arg is None:
                raise self.refuse(call, "'**' in a merge")
            update[keyword.arg] = self.expression(keyword.value)
        if not isinstance(update, dict):
            raise self.refuse(call, f"'{name}.{func.attr}(...)' with something other than a dict")
        merged = merge_config(current, update)
        self.names[name] = merged
        if name in self.own:
            self.own[name] = merged
        else:
            self.base[name] = merged
        return True

    def result(self) -> dict[str, Any]:
        """The base files' names with this file's merged over them (2.x style) or replacing them."""
        merged = dict(self.base)
        for name, value in self.own.items():
            merged[name] = value if self.pure_python or name not in merged else merge_config(merged[name], value)
        return merged

    # -- expressions ----------------------------------------------------------------------
    def expression(self, node: ast.expr) -> Any:
        """The value of one expression, or ``ConfigReadError`` when it needs code to run."""
        if isinstance(node, ast.Constant):
            reference = _BASE_REFERENCE.match(node.value) if isinstance(node.value, str) else None
            return self.base_value(node, reference.group(1).split(".")) if reference else node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.expression(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            result: dict[Any, Any] = {}
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:
                    result.update(self.mapping(value))
                else:
                    result[self.key(key)] = self.expression(value)
            return result
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, (ast.ListComp, ast.DictComp)):
            return self.comprehension(node)
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return copy.deepcopy(self.names[node.id])
            if node.id == "_base_":
                return copy.deepcopy(self.base)
            raise self.refuse(node, f"the name '{node.id}', not assigned earlier in this file")
        if isinstance(node, ast.Attribute):
            chain = _attribute_chain(node)
            if chain and chain[0] == "_base_":
                return self.base_value(node, chain[1:])
            value = self.expression(node.value)
            if isinstance(value, dict) and node.attr in value:
                return copy.deepcopy(value[node.attr])
            raise self.refuse(node, f"the attribute '.{node.attr}'")
        if isinstance(node, ast.Slice):
            parts = [None if p is None else self.expression(p) for p in (node.lower, node.upper, node.step)]
            if not all(p is None or isinstance(p, int) for p in parts):
                raise self.refuse(node, "a slice whose bounds are not integers")
            return slice(*parts)
        if isinstance(node, ast.Subscript):
            value, index = self.expression(node.value), self.expression(node.slice)
            try:
                return copy.deepcopy(value[index])
            except (KeyError, IndexError, TypeError):
                raise self.refuse(node, f"an index [{index!r}] the value does not have") from None
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self.arithmetic(node, _BINARY[type(node.op)], self.expression(node.left), self.expression(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            operand = self.expression(node.operand)
            if isinstance(operand, (int, float, bool)):
                return _UNARY[type(node.op)](operand)
            raise self.refuse(node, "a unary operator on something that is not a number")
        if isinstance(node, ast.Set) and len(node.elts) == 1 and isinstance(node.elts[0], ast.Set):
            inner = node.elts[0].elts
            chain = _attribute_chain(inner[0]) if len(inner) == 1 else None
            if chain and chain[0] == "_base_":  # {{_base_.x}} written without quotes
                return self.base_value(node, chain[1:])
        raise self.refuse(node, f"a '{type(node).__name__}' expression")

    def comprehension(self, node: ast.ListComp | ast.DictComp) -> Any:
        """``[expr for name in <a list>]`` (one loop, no condition) over a value the config holds."""
        if len(node.generators) != 1 or node.generators[0].ifs or node.generators[0].is_async:
            raise self.refuse(node, "a comprehension with more than one plain loop")
        loop = node.generators[0]
        if isinstance(loop.target, ast.Name):
            targets = [loop.target.id]
        elif isinstance(loop.target, ast.Tuple) and all(isinstance(e, ast.Name) for e in loop.target.elts):
            targets = [e.id for e in loop.target.elts]
        else:
            raise self.refuse(node, "a comprehension whose loop variable is not a name")
        items = self.expression(loop.iter)
        if isinstance(items, dict):
            items = list(items)
        if not isinstance(items, list):
            raise self.refuse(node, "a comprehension over something that is not a list")
        saved = {name: self.names[name] for name in targets if name in self.names}
        results = []
        try:
            for item in items:
                values = [item] if len(targets) == 1 else item
                if not isinstance(values, list) or len(values) != len(targets):
                    raise self.refuse(node, "a comprehension whose items do not unpack into its loop variables")
                self.names.update(zip(targets, values, strict=True))
                if isinstance(node, ast.ListComp):
                    results.append(self.expression(node.elt))
                else:
                    results.append((self.key(node.key), self.expression(node.value)))
        finally:
            for name in targets:
                self.names.pop(name, None)
            self.names.update(saved)
        return results if isinstance(node, ast.ListComp) else dict(results)

    def key(self, node: ast.expr) -> Any:
        key = self.expression(node)
        if not isinstance(key, (str, int, float, bool)):
            raise self.refuse(node, "a dict key that is not a string or number")
        return key

    def mapping(self, node: ast.expr) -> dict:
        value = self.expression(node)
        if not isinstance(value, dict):
            raise self.refuse(node, "'**' on something that is not a dict")
        return value

    def call(self, node: ast.Call) -> Any:
        if not (isinstance(node.func, ast.Name) and node.func.id == "dict" and "dict" not in self.names):
            raise self.refuse(node, f"a call to '{ast.unparse(node.func)}'")
        if node.args:
            raise self.refuse(node, "dict(...) with positional arguments")
        result: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                result.update(self.mapping(keyword.value))
            else:
                result[keyword.arg] = self.expression(keyword.value)
        return result

    def arithmetic(self, node: ast.BinOp, op, left: Any, right: Any) -> Any:
        numbers = (int, float)
        ok = (
            isinstance(left, numbers) and isinstance(right, numbers)
            or op is operator.add and type(left) is type(right) and isinstance(left, (str, list))
            or op is operator.mul and isinstance(left, (str, list)) and isinstance(right, int)
            and 0 <= right and len(left) * right <= MAX_REPEAT
        )
        if op is operator.pow and ok and abs(right) > 64:
            ok = False  # no way to make the reader spend minutes on one number
        if not ok:
            raise self.refuse(node, f"'{ast.unparse(node)}' ({type(left).__name__} and {type(right).__name__})")
        try:
            return op(left, right)
        except (ZeroDivisionError, OverflowError) as exc:
            raise self.refuse(node, f"'{ast.unparse(node)}': {exc}") from None

    def base_value(self, node: ast.AST, keys: list[str]) -> Any:
        value: Any = self.base
        for depth, key in enumerate(keys):
            if not isinstance(value, dict) or key not in value:
                raise self.refuse(node, f"_base_.{'.'.join(keys[:depth + 1])} is not defined in the base configs")
            value = value[key]
        return copy.deepcopy(value)


def _target_names(node: ast.Assign) -> list[str] | None:
    if all(isinstance(t, ast.Name) for t in node.targets):
        return [t.id for t in node.targets]
    return None


def _attribute_chain(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _is_read_base(node: ast.With) -> bool:
    if len(node.items) != 1:
        return False
    call = node.items[0].context_expr
    return isinstance(call, ast.Call) and not call.args and _attribute_chain(call.func) in (
        ["read_base"], ["mmengine", "config", "read_base"],
    )


def _is_type_module(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in TYPE_PACKAGES
