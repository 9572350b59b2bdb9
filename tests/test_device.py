"""runtime.device = "auto": CUDA, then Apple MPS, then the CPU; a device that is not there is a clear error."""

from __future__ import annotations

import pytest
import torch

from detsdk.engine import device as device_module
from detsdk.engine.device import resolve_device
from detsdk.errors import RecipeError


@pytest.fixture
def machine(monkeypatch):
    """Pretend the machine has the given accelerators."""

    def have(cuda: bool, mps: bool):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(device_module, "mps_available", lambda: mps)

    return have


@pytest.mark.parametrize(("cuda", "mps", "expected"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert resolve_device("auto").type == expected


def test_asking_for_mps_without_it_is_an_error(machine):
    machine(cuda=False, mps=False)
    with pytest.raises(RecipeError, match="MPS is not available"):
        resolve_device("mps")


def test_asking_for_cuda_without_it_is_an_error(machine):
    machine(cuda=False, mps=True)
    with pytest.raises(RecipeError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_mps_available_reads_torch_backends(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert device_module.mps_available() is True
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert device_module.mps_available() is False


def test_an_unknown_device_name_lists_the_choices():
    with pytest.raises(RecipeError, match="expected auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")
