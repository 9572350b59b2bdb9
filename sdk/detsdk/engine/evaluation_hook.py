"""The engine's evaluation during training, as a built-in hook."""

from __future__ import annotations

from detsdk.engine.intervals import Interval


class EvaluationHook:
    """Evaluate on ``split`` every ``interval`` and when the run ends (once per iteration at most)."""

    def __init__(self, split: str, interval: Interval):
        self.split, self.interval = split, interval
        self.evaluated_at = -1
        self.stopped_at_start = False

    def before_train(self, engine) -> None:
        """Remember whether the run was stopped before (then the final evaluation has run already)."""
        self.stopped_at_start = engine.stop_reason is not None

    def after_iter(self, engine, iteration: int, losses: dict[str, float]) -> None:
        """Mid-epoch, when training by iterations."""
        if self.interval.due_after_iter(engine):
            self._evaluate(engine)

    def after_epoch(self, engine) -> None:
        """At an epoch's (or the run's) end."""
        if self.interval.due_after_epoch(engine):
            self._evaluate(engine)

    def after_train(self, engine) -> None:
        """A resumed run that had already finished is evaluated once more; a stopped one is not."""
        if not self.stopped_at_start:
            self._evaluate(engine)

    def _evaluate(self, engine) -> None:
        if self.evaluated_at != engine.iteration:
            self.evaluated_at = engine.iteration
            engine.evaluate_split(self.split)
