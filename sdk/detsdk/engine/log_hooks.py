"""The engine's JSON log (``log.jsonl``) and progress bar, as built-in hooks."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from detsdk.engine import distributed
from detsdk.engine.run_log import RunLog


class JsonLogHook:
    """Averages the losses of every ``every`` iterations into one ``log.jsonl`` record; records a stop's reason.

    Evaluations write their own records (``Engine.evaluate_split``).
    """

    def __init__(self, run_log: RunLog, every: int):
        self.run_log, self.every = run_log, max(1, every)
        self.window: list = []  # the iterations' losses since the last record (LossReadouts, read lazily)
        self.started = time.perf_counter()
        self.stopped_at_start = False

    def before_train(self, engine) -> None:
        """Start timing; remember whether the run was stopped before (its reason is logged already)."""
        self.started = time.perf_counter()
        self.stopped_at_start = engine.stop_reason is not None

    def after_iter(self, engine, iteration: int, losses) -> None:
        """Add the iteration; every ``every`` iterations and at the last one, read the window's losses
        (one device transfer) and write their means."""
        self.window.append(losses)
        if iteration % self.every == 0 or iteration >= engine.total_iters:
            self._write(engine)

    def after_epoch(self, engine) -> None:
        """A run that ends early writes what its window holds."""
        if engine.stop_reason is not None:
            self._write(engine)

    def after_train(self, engine) -> None:
        """The stop's reason, when a hook stopped this run."""
        if engine.stop_reason is not None and not self.stopped_at_start:
            self._write(engine)
            print(f"stopped at iteration {engine.iteration} (epoch {engine.epoch}): {engine.stop_reason}")
            self.run_log.write({"mode": "stop", "epoch": engine.epoch, "iter": engine.iteration,
                                "reason": engine.stop_reason})

    def _write(self, engine) -> None:
        count = len(self.window)
        if not count:
            return
        engine.read_losses()  # the window's losses (and any other unread ones) in one transfer
        terms: dict[str, list[float]] = defaultdict(list)
        for losses in self.window:
            for name, value in losses.items():
                terms[name].append(value)
        self.run_log.write(
            {"mode": "train", "epoch": (engine.iteration - 1) // engine.iters_per_epoch + 1, "iter": engine.iteration,
             "lr": engine.optimizer.param_groups[0]["lr"],
             **{k: float(np.mean(v)) for k, v in terms.items()},
             "time": (time.perf_counter() - self.started) / count}
        )
        self.window.clear()
        self.started = time.perf_counter()


class ProgressBarHook:
    """A tqdm bar over the run's iterations (rank 0), with the loss and the learning rate."""

    def __init__(self):
        self.bar: tqdm | None = None

    def before_train(self, engine) -> None:
        """Open the bar at the iteration the run starts from."""
        self.bar = tqdm(total=engine.total_iters, initial=engine.iteration, desc="train", dynamic_ncols=True,
                        disable=not distributed.is_main_process())

    def after_iter(self, engine, iteration: int, losses) -> None:
        """One step; the loss and the learning rate when the losses were read (each log interval: no sync)."""
        self.bar.update(1)
        if getattr(losses, "is_read", True):
            self.bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{engine.optimizer.param_groups[0]['lr']:.2e}",
                                 refresh=False)

    def close(self) -> None:
        """Close the bar (after the run, also after a failure, so an error prints on its own line)."""
        if self.bar is not None:
            self.bar.close()


class PluginEvents:
    """The ``detsdk_*`` pluggy event hooks of every plugin, called from the run's events."""

    def __init__(self, registry):
        self.registry = registry

    def before_train(self, engine) -> None:
        """``detsdk_on_train_start``."""
        self.registry.call_hook("detsdk_on_train_start", engine=engine)

    def after_iter(self, engine, iteration: int, losses: dict[str, float]) -> None:
        """``detsdk_after_train_iter``."""
        self.registry.call_hook("detsdk_after_train_iter", engine=engine, iteration=iteration, losses=losses)

    def after_epoch(self, engine) -> None:
        """``detsdk_after_epoch``."""
        self.registry.call_hook("detsdk_after_epoch", engine=engine, epoch=engine.epoch)


class PluginTrainEnd:
    """``detsdk_on_train_end``, after the engine's own end-of-run work (last evaluation, plots)."""

    def __init__(self, registry):
        self.registry = registry

    def after_train(self, engine) -> None:
        """``detsdk_on_train_end``."""
        self.registry.call_hook("detsdk_on_train_end", engine=engine)
