"""The plugin's training hook: writes a file of its own and may stop the run (CONTRIBUTING.md "Write a hook")."""

from __future__ import annotations

import math


class ToyLossCsv:
    """Write ``iteration,loss`` lines to ``<work_dir>/<file>``; stop the run when the loss exceeds ``stop_above``.

    Recipe: ``train.hooks = [{ type = "toy_loss_csv", file = "losses.csv", stop_above = 100.0 }]``.
    """

    def __init__(self, file: str = "losses.csv", stop_above: float = math.inf):
        self.file, self.stop_above = file, float(stop_above)

    def before_train(self, engine) -> None:
        """Start the file (a resumed run keeps the lines up to its checkpoint)."""
        path = engine.work_dir / self.file
        kept = [line for line in path.read_text().splitlines()[1:] if int(line.split(",")[0]) <= engine.iteration] \
            if path.exists() else []
        path.write_text("".join(f"{line}\n" for line in ["iteration,loss", *kept]))

    def after_iter(self, engine, iteration: int, losses: dict[str, float]) -> None:
        """Append this iteration's loss; stop training if it diverged."""
        with (engine.work_dir / self.file).open("a") as file:
            file.write(f"{iteration},{losses['loss']:.6f}\n")
        if losses["loss"] > self.stop_above:
            engine.stop_training(f"toy_loss_csv: loss {losses['loss']:.3f} > {self.stop_above}")
