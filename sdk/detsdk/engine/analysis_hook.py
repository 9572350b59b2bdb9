"""The analysis of a run's final evaluation, as a built-in hook: confusion matrix, PR curves, errors in ``plots/``."""

from __future__ import annotations

from detsdk.engine import distributed


class AnalysisHook:
    """After training, ``detsdk.analysis`` on the last evaluation's metric into ``plots/`` (rank 0;
    off with ``runtime.plot_samples = 0``, like the prediction grid)."""

    def __init__(self, plot_samples: int):
        self.enabled = plot_samples > 0

    def after_train(self, engine) -> None:
        """Once, after the final evaluation."""
        if not (self.enabled and distributed.is_main_process()) or engine.last_metric is None:
            return
        from detsdk.analysis.report import analyze_evaluation  # matplotlib: only when a run ends

        for note in analyze_evaluation(engine.last_metric, engine.work_dir / "plots").notes:
            print(note)
