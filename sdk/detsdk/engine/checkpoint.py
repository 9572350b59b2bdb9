"""Checkpoints: written atomically, read with ``weights_only=True`` so loading never runs code."""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detsdk.errors import CheckpointError, warn


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` through a temp file and a rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; a file whose unpickling would run code is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        stubbed = _mmengine_checkpoint(path)  # MMDetection 3.x: its message hub and NumPy values left inert
        if stubbed is not None:
            return stubbed
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refused: loading it would run code or build arbitrary objects ({reason[:200]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, got {type(state).__name__}")
    return state


def _mmengine_checkpoint(path: Path) -> dict[str, Any] | None:
    """An MMEngine checkpoint read with its MMEngine/NumPy objects as inert stubs, or None (see that module)."""
    from detsdk.engine.mmengine_checkpoint import load_with_inert_stubs, stubbable_globals

    try:
        names = stubbable_globals(path)
        state = load_with_inert_stubs(path, names) if names else None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def model_state_of(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights in a det-sdk checkpoint, or in a plain / ``state_dict``-wrapped state dict."""
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            return state[key]
    return state


def load_matching_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load every weight whose name and shape match; report and return the re-initialised ones.

    Fine-tuning with another ``num_classes`` re-initialises the class-dependent layers,
    which keep their fresh initialisation (MMDetection's ``load_from``). A layer is
    re-initialised whole: when one of its tensors does not fit, none of them is loaded.
    The warning names exactly those layers, with the shapes that differ.
    """
    own = model.state_dict()
    differing: dict[str, list[str]] = {}  # layer -> "param (checkpoint shape) -> (model shape)"
    for name, tensor in weights.items():
        if name in own and own[name].shape != tensor.shape:
            layer, _, param = name.rpartition(".")
            differing.setdefault(layer, []).append(f"{param} {tuple(tensor.shape)} -> {tuple(own[name].shape)}")
    reinitialised = [name for name in own if name in weights and name.rpartition(".")[0] in differing]
    matched = {name: t for name, t in weights.items() if name in own and name.rpartition(".")[0] not in differing}
    if not matched:
        raise CheckpointError(f"{source}: no weight matches this model (is it a checkpoint of another architecture?)")
    model.load_state_dict(matched, strict=False)
    if differing:
        layers = ", ".join(f"{layer} ({', '.join(shapes)})" for layer, shapes in differing.items())
        warn(
            f"load_from {source}: re-initialised {len(reinitialised)} weights with a shape mismatch: {layers}; "
            f"{len(differing)} layers keep their fresh initialisation"
        )
    missing = [name for name in own if name not in weights]
    # BatchNorm's step counter has no use in FrozenBatchNorm2d: not a weight the model lacks.
    unexpected = [name for name in weights if name not in own and not name.endswith("num_batches_tracked")]
    if missing:
        warn(f"load_from {source}: {len(missing)} model weights are not in the checkpoint and keep their "
             f"initialisation: {listing(missing)}")
    if unexpected:
        warn(f"load_from {source}: {len(unexpected)} checkpoint weights are not in the model and were skipped: "
             f"{listing(unexpected)}")
    return reinitialised


def listing(names: list[str], limit: int = 8) -> str:
    """The first ``limit`` names, comma-separated, with how many more (for warnings about weights)."""
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def rng_states() -> dict[str, Any]:
    """Python, numpy and torch RNG states, in types ``weights_only`` loading accepts."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Undo ``rng_states``: continue every random stream where the checkpoint left it."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
