"""The plugin's components; each follows the contract in CONTRIBUTING.md."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn


class ToyConvNet(nn.Module):
    """Backbone: ``forward(images) -> dict`` fine to coarse, with ``out_channels`` and ``strides``."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.out_channels = [width, width * 2, width * 4, width * 8]
        self.strides = [4, 8, 16, 32]
        stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
        stages, channels = [stem], width
        for out in self.out_channels[1:]:
            stages.append(nn.Sequential(nn.Conv2d(channels, out, 3, 2, 1), nn.GroupNorm(4, out), nn.ReLU()))
            channels = out
        self.stages = nn.ModuleList(stages)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features, x = OrderedDict(), images
        for index, stage in enumerate(self.stages):
            x = stage(x)
            features[f"c{index + 2}"] = x
        return features


class ToyBlocks:
    """Dataset: ``len``, ``dataset[i]`` -> sample dict, and ``classes``."""

    classes = ["square", "disc"]

    def __init__(self, num_images: int = 8, size: int = 64, seed: int = 0):
        self.num_images, self.size, self.seed = num_images, size, seed

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng(self.seed * 1000 + index)
        image = np.full((self.size, self.size, 3), 20, np.uint8)
        label = int(rng.integers(2))
        side = int(rng.integers(self.size // 4, self.size // 2))
        x, y = (int(v) for v in rng.integers(0, self.size - side, size=2))
        if label == 0:
            image[y : y + side, x : x + side] = 230
        else:
            yy, xx = np.mgrid[: self.size, : self.size]
            radius = side / 2
            image[(yy - y - radius) ** 2 + (xx - x - radius) ** 2 <= radius**2] = 230
        return {
            "image": image,
            "boxes": np.array([[x, y, x + side, y + side]], np.float32),
            "labels": np.array([label], np.int64),
            "iscrowd": np.zeros(1, bool),
            "meta": {"image_id": index, "file": f"toy-{index}"},
        }


class ToyNoise:
    """Transform: sample in, sample out; only pixels change, so boxes stay valid."""

    def __init__(self, sigma: float = 4.0):
        self.sigma = sigma

    def __call__(self, sample: dict) -> dict:
        noise = np.random.normal(0, self.sigma, sample["image"].shape)
        sample["image"] = np.clip(sample["image"] + noise, 0, 255).astype(np.uint8)
        return sample


def toy_linear(optimizer, *, total_iters: int, iters_per_epoch: int, end_ratio: float = 0.0):
    """Scheduler: stepped once per iteration, lr falls linearly to ``end_ratio`` times the start."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: 1.0 - (1.0 - end_ratio) * min(it, total_iters) / max(1, total_iters)
    )
