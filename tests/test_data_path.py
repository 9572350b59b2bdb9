"""The fast data path: uint8 batches normalised on the device, and the DataLoader settings under [data]."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_recipe

from detsdk import Engine
from detsdk.builtin.transforms.geometric import Pad, RandomFlip
from detsdk.builtin.transforms.photometric import Normalize
from detsdk.data.device_normalize import DeviceNormalize, defer_normalize
from detsdk.data.loader import PipelineDataset, apply_pipeline, build_loader, collate
from detsdk.engine.build import build_model


def samples() -> list[dict]:
    """Two images of different sizes, so the batch has padding from ``pad`` and from ``collate``."""
    rng = np.random.default_rng(0)
    return [
        {"image": rng.integers(0, 256, (50, 61, 3), dtype=np.uint8), "boxes": np.array([[4, 6, 30, 40]], np.float32),
         "labels": np.array([0]), "meta": {}},
        {"image": rng.integers(0, 256, (37, 64, 3), dtype=np.uint8), "boxes": np.array([[10, 2, 60, 30]], np.float32),
         "labels": np.array([2]), "meta": {}},
    ]


def both_paths():
    """The CPU-normalised batch, and the uint8 batch with the device normalisation for it."""
    pipeline = [Normalize(), Pad(size_divisor=32)]
    cpu_images, targets, _ = collate([apply_pipeline(s, pipeline) for s in samples()])
    deferred, device_normalize = defer_normalize(pipeline)
    raw_images, raw_targets, _ = collate([apply_pipeline(s, deferred) for s in samples()])
    return cpu_images, targets, raw_images, raw_targets, device_normalize


def test_the_uint8_batch_normalised_on_the_device_equals_the_cpu_normalised_batch():
    cpu_images, _, raw_images, raw_targets, device_normalize = both_paths()
    assert raw_images.dtype == torch.uint8 and cpu_images.dtype == torch.float32
    assert raw_images.shape == cpu_images.shape == (2, 3, 64, 64)
    torch.testing.assert_close(device_normalize(raw_images, raw_targets), cpu_images, rtol=0, atol=1e-6)


def test_the_uint8_path_gives_the_losses_and_detections_of_the_cpu_path():
    cpu_images, targets, raw_images, raw_targets, device_normalize = both_paths()
    torch.manual_seed(0)
    model = build_model(tiny_recipe("unused")["model"], num_classes=3)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    results = []
    for images in (cpu_images, device_normalize(raw_images, raw_targets)):
        model.load_state_dict(initial)  # the training forward moves BatchNorm's statistics
        torch.manual_seed(1)  # the same RPN and RoI sampling on both sides
        model.train()
        losses = model(images, targets)
        model.eval()
        with torch.no_grad():
            detections = model(images, image_sizes=[t["image_size"] for t in targets])
        results.append((losses, detections))
    (cpu_losses, cpu_detections), (device_losses, device_detections) = results
    for name, value in cpu_losses.items():
        torch.testing.assert_close(device_losses[name], value, msg=name)
    assert len(cpu_detections[0]["boxes"]) > 0
    for cpu, device in zip(cpu_detections, device_detections):
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(device[key], cpu[key], msg=key)


def test_pipelines_that_do_not_end_with_normalize_and_zero_padding_stay_on_the_cpu():
    for pipeline in ([Normalize(), RandomFlip()], [Normalize(), Pad(pad_value=1.0)], [Pad()], []):
        transforms, device_normalize = defer_normalize(pipeline)
        assert device_normalize is None and transforms == pipeline


def test_float_batches_pass_the_device_normalisation_unchanged():
    images = torch.randn(1, 3, 8, 8)
    assert DeviceNormalize([0, 0, 0], [1, 1, 1])(images, [{"image_size": (8, 8)}]) is images


@pytest.mark.parametrize(("setting", "on_device"), [(True, True), (False, False), ("auto", False)])
def test_normalize_on_device_decides_where_training_normalises(tmp_path, setting, on_device):
    recipe = tiny_recipe(tmp_path, train={"iters": 1}, runtime={"work_dir": str(tmp_path), "plot_samples": 0})
    recipe["data"].pop("val")
    recipe["data"]["normalize_on_device"] = setting  # "auto": on with CUDA only; this test runs on the CPU
    engine = Engine.from_recipe(recipe, device="cpu")
    engine.fit()
    assert (engine.train_step.input_transform is not None) == on_device
    assert np.isfinite(engine.log.read()[-1]["loss"])
    assert engine.dataset("train").transforms[1].__class__.__name__ == "Normalize"  # evaluation's copy unchanged


def test_loader_settings_reach_the_dataloader(tmp_path):
    dataset = PipelineDataset([{"image": np.zeros((8, 8, 3), np.uint8)}] * 4, [])
    loader = build_loader(dataset, 2, 1, shuffle=True, pin_memory=False, persistent_workers=True, prefetch_factor=3)
    assert loader.persistent_workers and loader.prefetch_factor == 3
    in_process = build_loader(dataset, 2, 0, shuffle=True, persistent_workers=True, prefetch_factor=3)
    assert not in_process.persistent_workers and in_process.prefetch_factor is None
