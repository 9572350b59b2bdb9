"""An iteration's loss terms kept on the device until someone reads them.

Reading a loss (``.item()``, ``.tolist()``) makes the host wait for the device. A
``LossReadout`` holds the terms of one iteration as one small device tensor and
reads them on the first access; ``read_losses`` reads the readouts of several
iterations with one transfer (once per log interval), and both stop training on
a NaN or an infinite loss, naming the iteration and the term (Detectron2's check).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import torch

from detsdk.errors import TrainingError


class LossReadout(Mapping):
    """``{"loss": total, **terms}`` of iteration ``iteration`` (epoch ``epoch``), read lazily as floats.

    ``values`` is a 1-d float tensor, ``names`` its entries; indexing or iterating the
    values reads them once (one sync) and checks that they are finite.
    """

    def __init__(self, names: Sequence[str], values: torch.Tensor, iteration: int, epoch: int):
        self.names, self.values, self.iteration, self.epoch = list(names), values, iteration, epoch
        self._floats: dict[str, float] | None = None

    def floats(self) -> dict[str, float]:
        """The values as floats (read and checked on the first call)."""
        if self._floats is None:
            self.set_floats(self.values.tolist())
        return self._floats

    def set_floats(self, values: list[float]) -> None:
        """Store values read elsewhere (``read_losses``), after checking them."""
        floats = dict(zip(self.names, values))
        check_finite(floats, self.iteration, self.epoch)
        self._floats = floats

    @property
    def is_read(self) -> bool:
        """Whether the values were read already (reading them again costs no sync)."""
        return self._floats is not None

    def __getitem__(self, name: str) -> float:
        return self.floats()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        state = self._floats if self._floats is not None else "unread"
        return f"LossReadout(iteration={self.iteration}, {state})"


def read_losses(readouts: Sequence[LossReadout]) -> None:
    """Read every readout not read yet with one device transfer; the first non-finite one raises."""
    pending = [r for r in readouts if r._floats is None]
    if not pending:
        return
    if len({len(r.names) for r in pending}) == 1:
        rows = torch.stack([r.values for r in pending]).tolist()
    else:  # a model whose terms changed between iterations: one read each
        rows = [r.values.tolist() for r in pending]
    for readout, values in zip(pending, rows):
        readout.set_floats(values)


def check_finite(values: dict[str, float], iteration: int, epoch: int) -> None:
    """Stop training on a NaN or infinite loss, naming the iteration and the term."""
    if math.isfinite(values["loss"]):
        return
    bad = [f"{name} = {value}" for name, value in values.items() if name != "loss" and not math.isfinite(value)]
    raise TrainingError(
        f"loss is {values['loss']} at iteration {iteration} (epoch {epoch}): {', '.join(bad) or 'sum overflowed'}; "
        "lower the learning rate or add warmup (train.scheduler.warmup_iters)"
    )
