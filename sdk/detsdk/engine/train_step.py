"""One training iteration: autocast forward, loss check, scaled backward over micro-batches, clip, step, EMA.

``TrainStep`` is Detectron2's ``run_step`` with the ``[train]`` precision and
optimisation options:

- ``amp``: the forward runs under ``torch.autocast`` on the engine's device (bf16,
  or fp16 with a ``GradScaler``; fp16 needs CUDA);
- ``accumulate = N``: one iteration is N micro-batches of ``data.batch_size``
  images. Each micro-batch's loss is divided by the number of micro-batches, their
  gradients add up, and the optimizer, the LR scheduler and the EMA step once.
  Iteration counts (``train.iters``, intervals, ``log.jsonl``) count optimizer steps;
  the last iteration of an epoch may have fewer micro-batches;
- ``grad_clip``: the total gradient norm is clipped after unscaling and before the step;
- ``ema``: the averaged weights follow after every optimizer step.

The loss terms stay on the device: ``__call__`` returns a ``LossReadout`` that is
read when someone looks at it (the engine: once per log interval, and before a
checkpoint or an evaluation), so a step queues its forward, backward and optimizer
work without waiting for the device. A NaN or infinite loss is reported at that
read, naming its iteration and term. Target labels are checked on the host before
the batch moves (the model's ``check_targets``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from detsdk.engine.ema import ModelEMA
from detsdk.engine.loss_readout import LossReadout
from detsdk.errors import RecipeError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
Batch = tuple[torch.Tensor, list[dict]]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def amp_dtype(amp: str | bool, device: torch.device) -> torch.dtype | None:
    """``train.amp`` as an autocast dtype (None: full precision); fp16 without CUDA is a ``RecipeError``."""
    if not amp:
        return None
    if amp == "fp16" and device.type != "cuda":
        raise RecipeError(
            f"train.amp = \"fp16\" needs CUDA (it trains on {device.type}): float16 on the CPU is slow and "
            "its gradients need a GradScaler; use train.amp = \"bf16\" there"
        )
    return AMP_DTYPES[amp]


def iteration_batches(loader: Iterable, accumulate: int) -> Iterator[list[Batch]]:
    """Group the loader's ``(images, targets, metas)`` batches into iterations of ``accumulate`` micro-batches."""
    group: list[Batch] = []
    for images, targets, *_ in loader:
        group.append((images, targets))
        if len(group) == accumulate:
            yield group
            group = []
    if group:  # the end of the epoch: a shorter iteration
        yield group


class TrainStep:
    """Runs iterations on ``model``: forward, backward, clip, optimizer and scheduler step, EMA update.

    Args:
        model: the model to train (possibly wrapped in ``DistributedDataParallel``).
        optimizer, scheduler: stepped once per iteration.
        device: where the batches go.
        amp: ``"bf16"``, ``"fp16"`` or False.
        accumulate: micro-batches per iteration.
        grad_clip: max total gradient norm (0: off).
        ema: the weight average to update, or None.
        decode: makes the device batch from what the loader gives (``DeviceDecode`` for
            ``data.decode_on_device``: ``decode(images, device)``); None moves the loader's tensor.
        input_transform: applied to the images once on the device (e.g. ``DeviceNormalize``), or None.
        channels_last: send images in channels-last memory format (the model should be too).
        pad_multiple: pad each batch on the device (zeros at the bottom and right) to a multiple of
            this many pixels, so that a compiled model sees few shapes (0: off).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        device: torch.device,
        *,
        amp: str | bool = False,
        accumulate: int = 1,
        grad_clip: float = 0.0,
        ema: ModelEMA | None = None,
        decode: Callable[[Any, torch.device], torch.Tensor] | None = None,
        input_transform: Callable[[torch.Tensor, list[dict]], torch.Tensor] | None = None,
        channels_last: bool = False,
        pad_multiple: int = 0,
    ):
        self.model, self.optimizer, self.scheduler, self.device = model, optimizer, scheduler, device
        self.dtype = amp_dtype(amp, device)
        self.accumulate, self.grad_clip, self.ema = int(accumulate), float(grad_clip), ema
        self.decode, self.input_transform, self.channels_last = decode, input_transform, channels_last
        self.pad_multiple = int(pad_multiple)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def __call__(self, batches: list[Batch], iteration: int, epoch: int) -> LossReadout:
        """Train one iteration on ``batches``; returns the mean of each loss term over them (and over
        the processes), still on the device.

        ``iteration`` and ``epoch`` (1-based) only name the place of a NaN or infinite loss.
        """
        self.optimizer.zero_grad(set_to_none=True)
        sums: torch.Tensor | None = None
        names: list[str] = []
        for index, (images, targets) in enumerate(batches):
            images, targets = self.to_device(images, targets)
            # Under DDP, gradients are all-reduced once, on the last micro-batch.
            last = index == len(batches) - 1
            no_sync = getattr(self.model, "no_sync", None)
            with nullcontext() if last or no_sync is None else no_sync():
                with self.autocast():
                    losses = self.model(images, targets)
                total = sum(losses.values())
                self.scaler.scale(total / len(batches)).backward()
            names = ["loss", *losses]
            values = torch.stack([total.detach().float(), *(v.detach().float() for v in losses.values())])
            sums = values if sums is None else sums + values
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the fp16-scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(unwrap(self.model))
        return LossReadout(names, mean_over_processes(sums / len(batches)), iteration, epoch)

    def autocast(self):
        """``torch.autocast`` on the device with the ``amp`` dtype, or a no-op in full precision."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_device(self, images: Any, targets: list[dict]) -> Batch:
        """Move a batch to the device (or decode it there); apply the input transform and memory format there."""
        check_targets = getattr(unwrap(self.model), "check_targets", None)
        if check_targets is not None:  # on the host, before the move: no wait for the device
            check_targets(targets)
        if self.decode is not None:
            images = self.decode(images, self.device)
        else:
            images = images.to(self.device, non_blocking=True)
        targets = [{k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()}
                   for t in targets]
        if self.input_transform is not None:
            images = self.input_transform(images, targets)
        if self.pad_multiple > 0:
            images = pad_to_multiple(images, self.pad_multiple)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, targets

    # -- checkpoints ------------------------------------------------------
    def checkpoint_entries(self, model_state: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The checkpoint's ``scaler`` and ``ema`` entries, and its ``model`` weights.

        With EMA, ``model`` holds the averaged weights, which evaluation, ``best.pt``,
        ``load_detector`` and ``load_from`` use, and ``ema.training_weights`` the
        weights training continues from (MMEngine's EMAHook swaps them the same way).
        """
        entries: dict[str, Any] = {
            "model": model_state,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "ema": None,
        }
        if self.ema is not None:
            averaged = self.ema.state_dict()
            entries["model"] = averaged["weights"]
            entries["ema"] = {"training_weights": model_state, "updates": averaged["updates"]}
        return entries

    def restore(self, state: dict[str, Any]) -> None:
        """Load the training weights, the EMA and the scaler from a checkpoint (``--resume``)."""
        ema = state.get("ema")
        unwrap(self.model).load_state_dict(ema["training_weights"] if ema else state["model"])
        if self.ema is not None:
            if ema:
                self.ema.load_state_dict({"weights": state["model"], "updates": ema["updates"]})
            else:  # the checkpoint had no average: start it from the resumed weights
                self.ema = ModelEMA(unwrap(self.model), self.ema.momentum, self.ema.gamma, self.ema.update_buffers)
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """``B x C x H x W`` images zero-padded at the bottom and right to multiples of ``multiple`` pixels."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not pad_h and not pad_w:
        return images
    return torch.nn.functional.pad(images, (0, pad_w, 0, pad_h))


def mean_over_processes(values: torch.Tensor) -> torch.Tensor:
    """``values`` averaged over the processes of a distributed run (on the device, no host read)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    world = torch.distributed.get_world_size()
    if world > 1:
        torch.distributed.all_reduce(values)
        values = values / world
    return values
