"""The engine's plots, as a built-in hook: curves from ``log.jsonl`` and a grid of predictions."""

from __future__ import annotations

from detsdk.engine import distributed
from detsdk.data.draw import draw_detections
from detsdk.engine.plots import plot_curves, save_grid


class PlotsHook:
    """``plots/curves*.png`` and ``plots/predictions.png`` (``samples`` images of ``split``) after each evaluation
    during training and at the end."""

    def __init__(self, split: str, samples: int):
        self.split, self.samples = split, samples

    def after_eval(self, engine, metrics: dict[str, float]) -> None:
        """After each evaluation during training."""
        if engine.is_training:
            self.plot(engine)

    def after_train(self, engine) -> None:
        """Once more at the end."""
        self.plot(engine)

    def plot(self, engine) -> None:
        """Write the curves and the prediction grid (rank 0)."""
        if not distributed.is_main_process():
            return
        plots = engine.work_dir / "plots"
        plot_curves(engine.log.read(), plots)
        if self.samples <= 0 or engine.model is None:
            return
        dataset = engine.dataset(self.split).dataset
        images = [dataset[i]["image"] for i in range(min(self.samples, len(dataset)))]
        if not images:
            return
        results = engine.predict(images)
        drawn = [
            draw_detections(image, r.boxes, r.labels, r.scores, engine.classes, r.masks)
            for image, r in zip(images, results)
        ]
        save_grid(drawn, plots / "predictions.png")
