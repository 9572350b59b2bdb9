"""TensorBoard logging (``runtime.tensorboard = true``), as a training hook.

Writes ``<work_dir>/tensorboard``: every loss term and the learning rate at each
logged iteration (``train.log_interval``) under ``train/``, every metric of each
evaluation under ``val/``. Only rank 0 of a distributed run writes. Needs the
``tensorboard`` package (``pip install 'det-sdk[tensorboard]'``)::

    tensorboard --logdir runs/quickstart/tensorboard

The engine adds it to its built-in hooks when ``runtime.tensorboard`` is on; it
is also the ``tensorboard`` hook of ``train.hooks``.
"""

from __future__ import annotations

from typing import Any

from detsdk.errors import RecipeError


class TensorBoardLogger:
    """Losses, learning rate and metrics to TensorBoard event files."""

    def __init__(self):
        self.writer = None

    def before_train(self, engine) -> None:
        """Start a writer for this run (rank 0); a clear error without the package."""
        from detsdk.engine import distributed

        if not distributed.is_main_process():
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RecipeError(
                "runtime.tensorboard = true needs the tensorboard package: pip install 'det-sdk[tensorboard]' "
                "(or pip install tensorboard), or set runtime.tensorboard = false"
            ) from None
        # purge_step: a resumed run replaces what the killed one logged after its checkpoint.
        self.writer = SummaryWriter(log_dir=str(engine.work_dir / "tensorboard"), purge_step=engine.iteration + 1)

    def after_iter(self, engine, iteration: int, losses: dict[str, float]) -> None:
        """Every loss term and the learning rate, each ``train.log_interval`` iterations."""
        if self.writer is None or iteration % max(1, int(engine.config["train"]["log_interval"])):
            return
        for name, value in losses.items():
            self.writer.add_scalar(f"train/{name}", value, iteration)
        self.writer.add_scalar("train/lr", engine.optimizer.param_groups[0]["lr"], iteration)

    def after_eval(self, engine, metrics: dict[str, Any]) -> None:
        """Each evaluation's metrics at the current iteration."""
        if self.writer is None:
            return
        for name, value in metrics.items():
            self.writer.add_scalar(f"val/{name}", float(value), engine.iteration)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the writer (after the run, also after a failure)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
