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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from detsdk.engine.ema import ModelEMA
from detsdk.errors import RecipeError, TrainingError

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
        input_transform: applied to the images once on the device (e.g. ``DeviceNormalize``), or None.
        channels_last: send images in channels-last memory format (the model should be too).
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
        input_transform: Callable[[torch.Tensor, list[dict]], torch.Tensor] | None = None,
        channels_last: bool = False,
    ):
        self.model, self.optimizer, self.scheduler, self.device = model, optimizer, scheduler, device
        self.dtype = amp_dtype(amp, device)
        self.accumulate, self.grad_clip, self.ema = int(accumulate), float(grad_clip), ema
        self.input_transform, self.channels_last = input_transform, channels_last
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def __call__(self, batches: list[Batch], iteration: int, epoch: int) -> dict[str, float]:
        """Train one iteration on ``batches``; returns the mean of each loss term over them.

        ``iteration`` and ``epoch`` (1-based) only name the place of a NaN or infinite loss.
        """
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for index, (images, targets) in enumerate(batches):
            images, targets = self.to_device(images, targets)
            # Under DDP, gradients are all-reduced once, on the last micro-batch.
            last = index == len(batches) - 1
            no_sync = getattr(self.model, "no_sync", None)
            with nullcontext() if last or no_sync is None else no_sync():
                with self.autocast():
                    losses = self.model(images, targets)
                total = sum(losses.values())
                values = loss_values(total, losses)  # one device sync per micro-batch
                check_finite(values, iteration, epoch)
                self.scaler.scale(total / len(batches)).backward()
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the fp16-scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(unwrap(self.model))
        return {name: value / len(batches) for name, value in sums.items()}

    def autocast(self):
        """``torch.autocast`` on the device with the ``amp`` dtype, or a no-op in full precision."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_device(self, images: torch.Tensor, targets: list[dict]) -> Batch:
        """Move a batch to the device; apply the input transform and memory format there."""
        images = images.to(self.device, non_blocking=True)
        targets = [{k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()}
                   for t in targets]
        if self.input_transform is not None:
            images = self.input_transform(images, targets)
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


def loss_values(total: torch.Tensor, losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """``{"loss": total, **terms}`` as floats, read with one device sync."""
    stacked = torch.stack([total.detach().float(), *(v.detach().float() for v in losses.values())])
    return dict(zip(["loss", *losses], stacked.tolist()))


def check_finite(values: dict[str, float], iteration: int, epoch: int) -> None:
    """Stop training on a NaN or infinite loss, naming the iteration and the term."""
    if math.isfinite(values["loss"]):
        return
    bad = [f"{name} = {value}" for name, value in values.items() if name != "loss" and not math.isfinite(value)]
    raise TrainingError(
        f"loss is {values['loss']} at iteration {iteration} (epoch {epoch}): {', '.join(bad) or 'sum overflowed'}; "
        "lower the learning rate or add warmup (train.scheduler.warmup_iters)"
    )
