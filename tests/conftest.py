"""Shared fixtures: one CPU thread per test process, an isolated shapes cache, a fresh registry."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from detsdk.testing import painted_sample  # noqa: F401  (tests import it from here; it lives in the kit)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if not SHARED_DATA.is_dir():  # a git worktree under /work/wt: the shared data stays at /work/shared
    SHARED_DATA = Path("/work/shared/data")


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
        if env and "PYTHONPATH" in env and os.environ.get("PYTHONPATH"):  # keep this checkout's sources importable
            environment["PYTHONPATH"] = os.pathsep.join((env["PYTHONPATH"], os.environ["PYTHONPATH"]))
        completed = subprocess.run(
            [sys.executable, "-m", "detsdk", *map(str, args)],
            capture_output=True, text=True, env=environment, cwd=cwd or tmp_path, timeout=600,
        )
        return completed.returncode, completed.stdout, completed.stderr

    return run


def tiny_recipe(work_dir, **tables) -> dict:
    """A recipe small enough to train a few iterations on the CPU in seconds."""
    pipeline = [{"type": "normalize"}, {"type": "pad", "size_divisor": 32}]
    recipe = {
        "model": {
            "type": "faster_rcnn",
            "backbone": {"type": "resnet", "depth": 18, "frozen_stages": -1, "norm": "bn"},
            "neck": {"type": "fpn", "out_channels": 32},
            "rpn_head": {"type": "rpn_head", "anchor_sizes": [[16], [32], [64], [128], [256]],
                         "post_nms_top_n_train": 200, "post_nms_top_n_test": 100},
            "box_head": {"type": "shared2fc_box_head", "fc_channels": 64, "batch_size_per_image": 64},
        },
        "data": {
            "batch_size": 4,
            "num_workers": 0,
            "train": {"type": "shapes", "split": "train", "num_images": 8, "image_size": 64,
                      "pipeline": [{"type": "random_flip", "p": 0.5}, *pipeline]},
            "val": {"type": "shapes", "split": "val", "num_images": 4, "image_size": 64, "pipeline": pipeline},
        },
        "train": {"iters": 4, "optimizer": {"type": "sgd", "lr": 0.01}, "log_interval": 1},
        "runtime": {"work_dir": str(work_dir), "plot_samples": 2},
    }
    for table, values in tables.items():
        recipe.setdefault(table, {}).update(values)
    return recipe


def write_recipe(path, recipe: dict):
    """Write a recipe dict as TOML."""
    import tomli_w

    path.write_text(tomli_w.dumps(recipe))
    return path
