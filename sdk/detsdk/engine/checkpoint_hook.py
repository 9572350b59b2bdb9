"""The engine's checkpointing, as a built-in hook: ``last.pt`` at intervals, ``best.pt``, numbered copies."""

from __future__ import annotations

import os
import re
import shutil

from detsdk.engine import distributed
from detsdk.engine.intervals import Interval
from detsdk.errors import RecipeError, suggest


class CheckpointHook:
    """``last.pt`` every ``interval`` (and every ``every_iters`` iterations), ``best.pt`` at the best evaluation.

    ``best_metric`` names the metric that ranks evaluations (larger is better;
    empty: the metric's first value, e.g. ``bbox_mAP``). With ``max_keep`` > 0 each
    interval checkpoint is also kept as ``epoch_<N>.pt`` (``iter_<N>.pt`` when
    training by iterations), the newest ``max_keep`` of them. A run that a hook
    stopped writes ``last.pt`` once more at the end, holding the stop.
    """

    def __init__(self, interval: Interval, every_iters: int = 0, best_metric: str = "", max_keep: int = 0,
                 has_evaluation: bool = True):
        self.interval, self.every_iters = interval, every_iters
        self.best_metric, self.max_keep, self.has_evaluation = best_metric, max_keep, has_evaluation
        self.saved_at = -1
        self.saved_stop: str | None = None  # the stop reason last.pt holds
        self.stopped_at_start = False

    def before_train(self, engine) -> None:
        """Remember whether the run was stopped before (a resumed stopped run writes nothing)."""
        self.stopped_at_start = engine.stop_reason is not None

    def after_iter(self, engine, iteration: int, losses: dict[str, float]) -> None:
        """Mid-epoch: the interval (by iterations) or ``every_iters``."""
        if engine.epoch_ending:
            return
        if self.interval.due_after_iter(engine):
            self._save_interval(engine)
        elif self._every_iters_due(engine):
            self._save(engine)

    def after_epoch(self, engine) -> None:
        """At an epoch's (or the run's) end."""
        if self.interval.due_after_epoch(engine):
            self._save_interval(engine)
        elif self._every_iters_due(engine):
            self._save(engine)

    def after_eval(self, engine, metrics: dict[str, float]) -> None:
        """``best.pt`` when this evaluation (during training) beats the best so far."""
        if not engine.is_training or not metrics:
            return
        if self.best_metric and self.best_metric not in metrics:
            raise RecipeError(
                f"train.best_metric = {self.best_metric!r} is not a metric of this evaluation"
                f"{suggest(self.best_metric, metrics)}; it has {', '.join(metrics)}"
            )
        score = metrics[self.best_metric] if self.best_metric else next(iter(metrics.values()))
        if score > engine.best_score:
            engine.best_score = score
            engine.save("best.pt")

    def after_train(self, engine) -> None:
        """Without evaluations, the last weights are the best known; a stop is written into ``last.pt``."""
        if not self.has_evaluation:
            engine.save("best.pt")
        if engine.stop_reason is not None and not self.stopped_at_start and self.saved_stop != engine.stop_reason:
            self._save(engine, again=True)

    def _every_iters_due(self, engine) -> bool:
        return bool(self.every_iters) and engine.iteration % self.every_iters == 0

    def _save(self, engine, again: bool = False) -> None:
        if self.saved_at != engine.iteration or again:
            engine.save("last.pt")
            self.saved_at, self.saved_stop = engine.iteration, engine.stop_reason

    def _save_interval(self, engine) -> None:
        if self.saved_at == engine.iteration:
            return
        self._save(engine)
        if self.max_keep > 0 and distributed.is_main_process():
            self._keep_numbered(engine)

    def _keep_numbered(self, engine) -> None:
        """Copy ``last.pt`` to ``epoch_<N>.pt`` / ``iter_<N>.pt``; delete all but the newest ``max_keep``."""
        prefix, number = ("iter", engine.iteration) if self.interval.by_iterations else ("epoch", engine.epoch)
        last = engine.work_dir / "last.pt"
        temporary = engine.work_dir / f".{prefix}_{number}.pt.tmp"
        shutil.copyfile(last, temporary)
        os.replace(temporary, engine.work_dir / f"{prefix}_{number}.pt")
        pattern = re.compile(rf"{prefix}_(\d+)\.pt")
        numbered = sorted(
            (int(m.group(1)), path) for path in engine.work_dir.iterdir() if (m := pattern.fullmatch(path.name))
        )
        for _, path in numbered[: max(0, len(numbered) - self.max_keep)]:
            path.unlink(missing_ok=True)
