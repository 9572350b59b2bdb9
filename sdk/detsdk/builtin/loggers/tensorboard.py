"""TensorBoard logging (``runtime.tensorboard = true``), as an implementation of the engine's event hooks.

Writes ``<work_dir>/tensorboard``: every loss term and the learning rate at each
logged iteration (``train.log_interval``) under ``train/``, every metric of each
evaluation under ``val/``. Only rank 0 of a distributed run writes. Needs the
``tensorboard`` package (``pip install 'det-sdk[tensorboard]'``)::

    tensorboard --logdir runs/quickstart/tensorboard
"""

from __future__ import annotations

import weakref
from typing import Any

from detsdk.errors import RecipeError

_WRITERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> SummaryWriter


def _enabled(engine) -> bool:
    from detsdk.engine import distributed

    return bool(engine.config["runtime"].get("tensorboard")) and distributed.is_main_process()


def open_writer(engine) -> None:
    """Start a writer for this run when the recipe asks for one; a clear error without the package."""
    if not _enabled(engine):
        return
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise RecipeError(
            "runtime.tensorboard = true needs the tensorboard package: pip install 'det-sdk[tensorboard]' "
            "(or pip install tensorboard), or set runtime.tensorboard = false"
        ) from None
    # purge_step: a resumed run replaces what the killed one logged after its checkpoint.
    _WRITERS[engine] = SummaryWriter(log_dir=str(engine.work_dir / "tensorboard"), purge_step=engine.iteration + 1)


def log_iteration(engine, iteration: int, losses: dict[str, float]) -> None:
    """Every loss term and the learning rate, each ``train.log_interval`` iterations."""
    writer = _WRITERS.get(engine)
    if writer is None or iteration % max(1, int(engine.config["train"]["log_interval"])):
        return
    for name, value in losses.items():
        writer.add_scalar(f"train/{name}", value, iteration)
    writer.add_scalar("train/lr", engine.optimizer.param_groups[0]["lr"], iteration)


def log_metrics(engine, metrics: dict[str, Any]) -> None:
    """Each evaluation's metrics at the current iteration."""
    writer = _WRITERS.get(engine)
    if writer is None:
        return
    for name, value in metrics.items():
        writer.add_scalar(f"val/{name}", float(value), engine.iteration)
    writer.flush()


def close_writer(engine) -> None:
    """Flush and close the run's writer."""
    writer = _WRITERS.pop(engine, None)
    if writer is not None:
        writer.close()
