"""When an interval's work falls due: after an epoch, or mid-epoch for runs that count iterations."""

from __future__ import annotations

import attrs


@attrs.frozen
class Interval:
    """Every ``every`` epochs, or iterations when ``by_iterations`` (``train.iters > 0``); always at the end.

    The engine's built-in hooks ask ``due_after_iter`` in ``after_iter`` (mid-epoch
    only, so the work happens once) and ``due_after_epoch`` in ``after_epoch``
    (which also runs when the run ends early, mid-epoch).
    """

    every: int
    by_iterations: bool

    def due_after_iter(self, engine) -> bool:
        """Due at this mid-epoch iteration (iteration-based runs only)."""
        return self.by_iterations and not engine.epoch_ending and engine.iteration % self.every == 0

    def due_after_epoch(self, engine) -> bool:
        """Due at this epoch's end (or the run's end)."""
        count = engine.iteration if self.by_iterations else engine.epoch
        return count % self.every == 0 or engine.finishing
