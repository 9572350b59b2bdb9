"""Run a training's hook objects (DESIGN.md "Hooks"): each event, every hook that has its method, in order.

A hook object has any of ``before_train(engine)``, ``before_epoch(engine)``,
``after_iter(engine, iteration, losses)``, ``after_epoch(engine)``,
``after_eval(engine, metrics)`` and ``after_train(engine)``. One that raises ends
the run with a ``HookError`` naming the hook, its plugin and the event. A hook
with ``state_dict()`` and ``load_state_dict(state)`` keeps its state in the
checkpoint, so ``--resume`` continues it; one with ``close()`` has it called
when ``fit()`` returns or fails (a progress bar, a writer, a tracking run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from detsdk.errors import HookError

HOOK_EVENTS = ("before_train", "before_epoch", "after_iter", "after_epoch", "after_eval", "after_train")


@attrs.frozen
class NamedHook:
    """A hook object and how errors name it: ``'early_stopping' (plugin detsdk)``.

    The engine's own hooks (``builtin``) raise their errors as they are.
    """

    hook: Any
    name: str
    builtin: bool = False


class Hooks:
    """The hooks of one run, called in order for each event."""

    def __init__(self, hooks: Sequence[NamedHook] = ()):
        self.hooks = list(hooks)

    def __len__(self) -> int:
        return len(self.hooks)

    def call(self, event: str, engine, *args: Any) -> None:
        """Call ``event`` on every hook that has it; a failure names the hook."""
        for named in self.hooks:
            method = getattr(named.hook, event, None)
            if method is None:
                continue
            if named.builtin:
                method(engine, *args)
                continue
            try:
                method(engine, *args)
            except Exception as exc:
                message = str(exc).strip().replace("\n", " ") or "(no message)"
                raise HookError(f"hook {named.name} failed in {event}: {type(exc).__name__}: {message}") from exc

    def close(self) -> None:
        """Call ``close()`` on every hook that has one (after the run, also after a failure)."""
        for named in self.hooks:
            close = getattr(named.hook, "close", None)
            if callable(close):
                close()

    def state_dict(self) -> dict[str, Any]:
        """The state of every hook that keeps one, keyed by its position and name."""
        return {
            _key(i, named): named.hook.state_dict()
            for i, named in enumerate(self.hooks)
            if callable(getattr(named.hook, "state_dict", None))
        }

    def load_state_dict(self, states: dict[str, Any]) -> None:
        """Give each hook the state a checkpoint kept for it (the same position and name)."""
        for i, named in enumerate(self.hooks):
            state = states.get(_key(i, named))
            if state is not None and callable(getattr(named.hook, "load_state_dict", None)):
                named.hook.load_state_dict(state)


def _key(index: int, named: NamedHook) -> str:
    return f"{index}:{named.name}"
