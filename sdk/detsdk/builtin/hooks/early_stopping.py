"""``early_stopping``: stop training when a metric has not improved for ``patience`` evaluations."""

from __future__ import annotations

import math
from typing import Literal

from detsdk.errors import RecipeError, suggest


class EarlyStopping:
    """Stop the run after ``patience`` evaluations in a row without improving ``monitor``.

    An evaluation improves when ``monitor`` is more than ``min_delta`` above the
    best so far (``mode = "max"``) or below it (``"min"``). The best value and the
    count survive ``--resume`` (they are in the checkpoint).

    Args:
        monitor: a key of the evaluation's metrics, e.g. ``bbox_mAP``.
        mode: ``"max"`` when larger is better, ``"min"`` when smaller is.
        patience: evaluations without improvement before stopping (>= 1).
        min_delta: the smallest change that counts as an improvement (>= 0).
    """

    def __init__(self, monitor: str = "bbox_mAP", mode: Literal["max", "min"] = "max", patience: int = 3,
                 min_delta: float = 0.0):
        if mode not in ("max", "min"):
            raise RecipeError(f'early_stopping: mode = {mode!r}: expected "max" or "min"')
        if patience < 1:
            raise RecipeError(f"early_stopping: patience = {patience}: expected an integer >= 1")
        if min_delta < 0:
            raise RecipeError(f"early_stopping: min_delta = {min_delta}: expected a number >= 0")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, float(min_delta)
        self.best = -math.inf if mode == "max" else math.inf
        self.waited = 0

    def after_eval(self, engine, metrics: dict[str, float]) -> None:
        """Count an evaluation that did not improve; at ``patience`` of them, stop the run."""
        if self.monitor not in metrics:
            raise RecipeError(
                f"early_stopping: monitor '{self.monitor}' is not a metric of this evaluation"
                f"{suggest(self.monitor, metrics)}; it has {', '.join(metrics) or 'none'}"
            )
        value = float(metrics[self.monitor])
        improved = value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        if improved:
            self.best, self.waited = value, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            engine.stop_training(
                f"early_stopping: {self.monitor} did not improve for {self.waited} evaluations "
                f"(best {self.best:.4f}, mode {self.mode}, min_delta {self.min_delta:g})"
            )

    def state_dict(self) -> dict:
        """The best value so far and the evaluations since (for ``--resume``)."""
        return {"best": self.best if math.isfinite(self.best) else None, "waited": self.waited}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint's ``state_dict()``."""
        if state.get("best") is not None:
            self.best = float(state["best"])
        self.waited = int(state["waited"])
