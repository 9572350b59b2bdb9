"""Build what training runs, from the typed ``[train]``, ``[data]`` and ``[runtime]``: one function, one attrs value.

``Engine.fit`` builds the parts, then runs them; nothing here runs an iteration.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from torch import nn

from detsdk.data.device_decode import DeviceDecode
from detsdk.data.device_normalize import DeviceNormalize, defer_normalize
from detsdk.data.encoded import EncodedDataset, check_decodable, collate_encoded
from detsdk.data.loader import PipelineDataset, build_loader
from detsdk.data.samplers import aspect_ratio_groups
from detsdk.engine import build, distributed
from detsdk.engine.train_setup import build_train_step, scale_learning_rate, world_size
from detsdk.engine.train_step import TrainStep
from detsdk.errors import DataError, RecipeError
from detsdk.recipe.config import DataConfig, RecipeConfig


@attrs.define
class TrainingParts:
    """What one training run uses, built before its first iteration."""

    model: nn.Module  # after SyncBN conversion; the DDP wrapper goes around it later
    train_data: PipelineDataset  # what the loader reads: seeded samples, device normalisation deferred (or encoded)
    loader: torch.utils.data.DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_step: TrainStep
    device_normalize: DeviceNormalize | None
    iters_per_epoch: int
    total_iters: int
    samples_per_iteration: int  # what one iteration takes from the sampler: batch size x accumulate
    by_iterations: bool  # train.iters > 0: intervals count iterations


def build_training_parts(settings: RecipeConfig, model: nn.Module, train_set: PipelineDataset,
                         device: torch.device) -> TrainingParts:
    """The loader, optimizer, scheduler and train step a validated recipe's ``settings`` describe for ``model``."""
    train, data, seed = settings.train, settings.data, settings.runtime.seed
    train_data, device_normalize = _train_data(train_set, data, device, seed)
    loader = build_loader(
        train_data, data.batch_size, data.num_workers, shuffle=True, seed=seed,
        pin_memory=data.pin_memory and device.type == "cuda",
        persistent_workers=data.persistent_workers, prefetch_factor=data.prefetch_factor,
        rank=distributed.get_rank(), world_size=distributed.get_world_size(),
        group_ids=aspect_ratio_groups(train_data.dataset) if data.group_by_aspect_ratio else None,
        collate_fn=collate_encoded if data.decode_on_device else None,
    )
    iters_per_epoch = math.ceil(len(loader) / train.accumulate)  # an iteration is one optimizer step
    if iters_per_epoch == 0:
        raise DataError(f"data.train: the training dataset is empty ({data.train['type']})")
    total_iters = train.iters if train.by_iterations else train.epochs * iters_per_epoch
    if train.sync_bn:
        model = distributed.convert_sync_batchnorm(model, device)
    optimizer = build.build_optimizer(train.optimizer, model)
    scale_learning_rate(optimizer, train.auto_scale_lr, data.batch_size, train.accumulate, world_size())
    scheduler = build.build_scheduler(train.scheduler, optimizer, total_iters, iters_per_epoch)
    train_step = build_train_step(model, optimizer, scheduler, device, train, device_normalize,
                                  decode=DeviceDecode() if data.decode_on_device else None)
    return TrainingParts(model, train_data, loader, optimizer, scheduler, train_step, device_normalize,
                         iters_per_epoch, total_iters, data.batch_size * train.accumulate, train.by_iterations)


def _train_data(train_set: PipelineDataset, data: DataConfig, device: torch.device, seed: int):
    """The training data as the loader sees it: samples seeded by (seed, epoch, index), uint8 when
    normalisation runs on the device, still encoded with ``decode_on_device``; returns it and the
    device normalisation (or None)."""
    transforms, device_normalize = train_set.transforms, None
    if data.decode_on_device:
        if data.normalize_on_device is False:
            raise RecipeError("data.decode_on_device = true normalises on the device too; "
                              "data.normalize_on_device = false contradicts it (remove it, or set it to true)")
        names = [spec.get("type") for spec in data.train.get("pipeline", [])]
        device_normalize = check_decodable(transforms, "data.train.pipeline", names)
        train_data = EncodedDataset(train_set.dataset, transforms, where=f"data.train ({data.train['type']})")
    else:
        if data.normalize_on_device is True or (data.normalize_on_device == "auto" and device.type == "cuda"):
            transforms, device_normalize = defer_normalize(transforms)
        train_data = PipelineDataset(train_set.dataset, transforms)
    train_data.seed_samples(seed)
    return train_data, device_normalize
