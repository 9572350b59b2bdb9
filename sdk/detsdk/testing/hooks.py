"""The hook check: the hook methods an object has take the arguments the engine passes (DESIGN.md, Hooks)."""

from __future__ import annotations

import inspect
from typing import Any

from detsdk.errors import suggest
from detsdk.testing.results import CheckResult, failed, verdict

HOOK_METHODS = {
    "before_train": ("engine",),
    "before_epoch": ("engine",),
    "after_iter": ("engine", "iteration", "losses"),
    "after_epoch": ("engine",),
    "after_eval": ("engine", "metrics"),
    "after_train": ("engine",),
}
# Optional methods the engine also calls (``detsdk.engine.hooks``): kept in checkpoints, closed after the run.
OPTIONAL_METHODS = {"state_dict", "load_state_dict", "close"}


def check_hook(component: str, hook: Any) -> list[CheckResult]:
    """Some hook method present; each present one callable with its contract's arguments, by position and by name.

    A public method whose name is close to a hook method's (``after_iteration``)
    is reported too: the engine would never call it.
    """
    present = [name for name in HOOK_METHODS if callable(getattr(hook, name, None))]
    near = []
    for name in dir(hook):
        if name.startswith("_") or name in HOOK_METHODS or name in OPTIONAL_METHODS or not callable(getattr(hook, name, None)):
            continue
        prefixed = [method for method in HOOK_METHODS if name.startswith(method) or method.startswith(name)]
        hint = f" (did you mean '{prefixed[0]}'?)" if prefixed else suggest(name, HOOK_METHODS)
        if hint:
            near.append(f"'{name}' is not a hook method{hint}")
    if not present:
        listed = ", ".join(HOOK_METHODS)
        return [failed(component, "methods", "; ".join(near) or f"has none of the hook methods ({listed})")]
    results = [verdict(component, "methods", near, f"has {', '.join(present)}")]
    for name in present:
        expected = HOOK_METHODS[name]
        wanted = f"{name}({', '.join(expected)})"
        try:
            signature = inspect.signature(getattr(hook, name))
        except (TypeError, ValueError):
            results.append(failed(component, name, f"has no inspectable signature; expected {wanted}"))
            continue
        problems = []
        for how, call in (("by position", lambda s: s.bind(*expected)), ("by name", lambda s: s.bind(**dict.fromkeys(expected)))):
            try:
                call(signature)
            except TypeError as exc:
                problems.append(f"{name}{signature} cannot be called {how} as {wanted}: {exc}")
        results.append(verdict(component, name, problems[:1], f"{name}{signature} fits {wanted}"))
    return results
