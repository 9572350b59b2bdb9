"""Shared fixtures: one CPU thread per test process, an isolated shapes cache, a fresh registry."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def shapes_cache(tmp_path_factory):
    """Every test process shares one shapes cache (generation is atomic, so workers may race)."""
    cache = tmp_path_factory.getbasetemp().parent / "shapes-cache"
    os.environ["DETSDK_CACHE"] = str(cache)
    return cache


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Each test discovers plugins anew and sees only the built-ins unless it asks for more."""
    from detsdk.plugins import reset_registry

    monkeypatch.setenv("DETSDK_LOAD_PLUGINS", "")
    monkeypatch.delenv("DETSDK_STRICT_PLUGINS", raising=False)
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def run_sdk(tmp_path):
    """Run the real ``sdk`` command in a subprocess: returns (exit code, stdout, stderr)."""
    import subprocess

    def run(*args, env=None, cwd=None):
        environment = {**os.environ, **(env or {})}
        completed = subprocess.run(
            [sys.executable, "-m", "detsdk", *map(str, args)],
            capture_output=True, text=True, env=environment, cwd=cwd or tmp_path, timeout=600,
        )
        return completed.returncode, completed.stdout, completed.stderr

    return run
