"""Pick the device: CUDA when present, then Apple's MPS, else the CPU."""

from __future__ import annotations

import torch

from detsdk.errors import RecipeError


def mps_available() -> bool:
    """Apple-silicon GPU through Metal (``torch.backends.mps``), where this torch build has it."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is CUDA when available, else MPS, else CPU; asking for a missing one is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RecipeError(f"device '{name}': expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"device '{name}': CUDA is not available on this machine; use --device cpu")
    if device.type == "mps" and not mps_available():
        raise RecipeError(f"device '{name}': Apple MPS is not available on this machine; use --device cpu")
    return device
