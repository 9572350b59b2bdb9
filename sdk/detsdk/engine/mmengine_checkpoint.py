"""MMEngine checkpoints (MMDetection 3.x) read with ``weights_only=True``, their non-tensor objects left inert.

MMEngine pickles its message hub (``mmengine.logging.HistoryBuffer``) and NumPy values next to
the weights, which ``torch.load(weights_only=True)`` refuses. Such a file is read again with
every global it names from MMEngine, MMDetection, MMCV or NumPy replaced by an *inert stub*: a
fresh class of the same name whose constructor and ``__setstate__`` take anything and do
nothing. Nothing of those libraries is imported or called, torch's own refusals (``os``,
``subprocess``, ...) still apply, and a file that names any other global is refused as before.
The tensors load as usual; the stubbed values (training history, seeds) are of no use here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

STUBBED_PACKAGES = ("mmengine", "mmdet", "mmcv", "numpy")


class InertStub:
    """Stands in for a class or function a checkpoint names: built from anything, holds nothing."""

    def __new__(cls, *args: Any, **kwargs: Any):
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def stubbable_globals(path: str | Path) -> list[str] | None:
    """The globals ``weights_only`` refuses in ``path``, when all come from ``STUBBED_PACKAGES`` (else None)."""
    names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    if names and all(name.split(".")[0] in STUBBED_PACKAGES for name in names):
        return names
    return None


def load_with_inert_stubs(path: str | Path, names: list[str]) -> Any:
    """``torch.load(weights_only=True)`` with each of ``names`` allowed as an inert stub of that name."""
    stubs = []
    for name in names:
        module, _, qualname = name.rpartition(".")
        stubs.append(type(qualname, (InertStub,), {"__module__": module, "__qualname__": qualname}))
    with torch.serialization.safe_globals(stubs):
        return torch.load(path, map_location="cpu", weights_only=True)
