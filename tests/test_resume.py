"""Exact resume: a run killed mid-epoch and resumed ends with the weights of a run never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import tiny_recipe, write_recipe

from detsdk.data.loader import PipelineDataset, build_loader
from detsdk.engine.build import build_transforms
from detsdk.engine.checkpoint import load_checkpoint
from detsdk.engine.run_log import RunLog

# Checkpoints after iterations 4 (end of epoch 1) and 5 (mid-epoch 2); the run is killed during
# iteration 7, when the log already shows iteration 6: resuming replays 6 and 7 from the middle of epoch 2.
CHECKPOINT_EVERY, LAST_CHECKPOINT, PAUSE_AT = 5, 5, 7

# `sdk run` with one more plugin: it stops the run at iteration PAUSE_AT (a marker file says so)
# until the test kills it, so the kill always lands between checkpoints without racing the run.
PAUSING_SDK = """
import sys, time
from pathlib import Path
import detsdk
from detsdk.cli.main import main
from detsdk.plugins import get_registry

class Pause:
    @detsdk.hookimpl
    def detsdk_after_train_iter(self, engine, iteration, losses):
        if iteration == int(sys.argv[1]):
            Path(sys.argv[2]).write_text("paused")
            time.sleep(600)

get_registry().add_plugin("pause", "0", Pause)
main(sys.argv[3:])
"""


def resume_recipe(work_dir) -> dict:
    """Two epochs of 4 iterations with random augmentation, a loader worker, EMA, evaluation each epoch."""
    recipe = tiny_recipe(
        work_dir,
        train={"epochs": 2, "iters": 0, "checkpoint_every_iters": CHECKPOINT_EVERY, "ema": {"momentum": 0.1}},
        runtime={"work_dir": str(work_dir), "plot_samples": 0, "deterministic": True, "seed": 3},
    )
    recipe["data"].update(batch_size=2, num_workers=1)
    recipe["data"]["train"]["pipeline"].insert(0, {"type": "photometric_distortion"})
    return recipe


def subprocess_env() -> dict[str, str]:
    """This test's environment (plugins, shapes cache), one thread: every run computes the same way."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def sdk_command(*args) -> list[str]:
    return [sys.executable, "-m", "detsdk", *map(str, args)]


def train_iterations(work_dir) -> list[int]:
    return [r["iter"] for r in RunLog(work_dir).read() if r["mode"] == "train"]


def test_sigkill_mid_epoch_then_resume_ends_with_equal_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    recipe = write_recipe(tmp_path / "recipe.toml", resume_recipe(straight))
    killed_recipe = write_recipe(tmp_path / "killed.toml", resume_recipe(killed))

    # The uninterrupted run goes alongside the one that will be killed.
    reference_run = subprocess.Popen(sdk_command("run", recipe), cwd=tmp_path, env=subprocess_env(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = tmp_path / "paused"
    (tmp_path / "pausing_sdk.py").write_text(PAUSING_SDK)
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "pausing_sdk.py"), str(PAUSE_AT), str(marker), "run", str(killed_recipe)],
        cwd=tmp_path, env=subprocess_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert process.poll() is None, f"the run ended before the kill: {process.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "the run never reached the pause"
            time.sleep(0.05)
        assert load_checkpoint(killed / "last.pt")["iteration"] == LAST_CHECKPOINT
        assert max(train_iterations(killed)) > LAST_CHECKPOINT  # iterations after the checkpoint were logged
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    resumed_run = subprocess.run(sdk_command("run", killed_recipe, "--resume"), cwd=tmp_path, env=subprocess_env(),
                                 capture_output=True, text=True, timeout=300)
    assert resumed_run.returncode == 0, resumed_run.stderr[-3000:]
    assert reference_run.wait(timeout=300) == 0, reference_run.stderr.read()[-3000:]

    resumed, reference = load_checkpoint(killed / "last.pt"), load_checkpoint(straight / "last.pt")
    assert resumed["iteration"] == reference["iteration"] == 8
    for key in ("model", "ema"):  # the averaged weights, then the training weights and the update count
        weights = reference[key]["training_weights"] if key == "ema" else reference[key]
        other = resumed[key]["training_weights"] if key == "ema" else resumed[key]
        assert weights.keys() == other.keys()
        for name, tensor in weights.items():
            assert torch.equal(other[name], tensor), (key, name)
    assert resumed["ema"]["updates"] == reference["ema"]["updates"] == 8
    for slot, state in reference["optimizer"]["state"].items():
        assert torch.equal(resumed["optimizer"]["state"][slot]["momentum_buffer"], state["momentum_buffer"])
    # The log replays the iterations after the checkpoint once: no duplicates, same evaluations.
    assert train_iterations(killed) == train_iterations(straight) == list(range(1, 9))
    evaluations = [(r["iter"], r["bbox_mAP"]) for r in RunLog(killed).read() if r["mode"] == "val"]
    assert evaluations == [(r["iter"], r["bbox_mAP"]) for r in RunLog(straight).read() if r["mode"] == "val"]


MIXING = [{"type": "mosaic", "img_scale": [32, 32]}, {"type": "mixup", "img_scale": [64, 64]},
          {"type": "resize", "scale": [64, 64], "keep_ratio": False}]


@pytest.mark.parametrize("mixing", [[], MIXING], ids=["photometric", "mosaic+mixup"])
def test_seeded_samples_do_not_depend_on_workers_or_where_the_epoch_starts(tmp_path, mixing):
    spec = tiny_recipe(tmp_path)["data"]["train"]
    spec["pipeline"][:0] = mixing + [{"type": "photometric_distortion"}]  # mosaic draws its other samples seeded
    from detsdk.engine.build import build_dataset

    dataset = PipelineDataset(build_dataset(spec, "data.train"), build_transforms(spec, "data.train"))
    dataset.seed_samples(7)

    def images(num_workers: int, epoch: int, start: int) -> list[np.ndarray]:
        loader = build_loader(dataset, 2, num_workers, shuffle=True, seed=7, persistent_workers=True)
        loader.sampler.set_epoch(epoch, start)
        dataset.set_epoch(epoch)
        return [batch[0] for batch in loader]

    whole = images(0, epoch=1, start=0)
    assert all(torch.equal(a, b) for a, b in zip(whole, images(2, epoch=1, start=0)))
    assert all(torch.equal(a, b) for a, b in zip(whole[2:], images(1, epoch=1, start=4)))  # resumed mid-epoch
    assert not torch.equal(whole[0], images(0, epoch=2, start=0)[0])  # another epoch, other augmentation


def test_resume_drops_log_records_after_the_checkpoint(tmp_path):
    log = RunLog(tmp_path)
    for iteration in (1, 2, 3, 4):
        log.write({"mode": "train", "iter": iteration, "loss": 1.0})
    log.write({"mode": "val", "iter": 4, "bbox_mAP": 0.5})
    with log.path.open("a") as file:
        file.write('{"mode": "train", "it')  # a line cut short by the kill
    assert log.drop_after(2) == 4
    assert [json.loads(line)["iter"] for line in log.path.read_text().splitlines()] == [1, 2]
