"""What training sets up once, before its first iteration, from ``[train]`` and ``[runtime]`` keys.

Deterministic mode, the learning rate scaled to the total batch size
(``auto_scale_lr``), the model's memory format (``channels_last``) and the
compiled backbone (``compile``).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from detsdk.engine.ema import ModelEMA
from detsdk.engine.train_step import TrainStep
from detsdk.errors import RecipeError
from detsdk.recipe.config import TrainConfig
from detsdk.recipe.options import AUTO_SCALE_LR_DEFAULTS, COMPILE_DEFAULTS, EMA_DEFAULTS, table_option


def enable_deterministic() -> None:
    """``runtime.deterministic``: deterministic algorithms and cuDNN, so a run repeats bit for bit.

    An op without a deterministic implementation warns (``warn_only``) rather than stops
    a long run; the warning names it. cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` at its
    first use, so this runs before the model reaches the GPU.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def world_size() -> int:
    """Processes training together (``torch.distributed``, else torchrun's ``WORLD_SIZE``, else 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def scale_learning_rate(
    optimizer: torch.optim.Optimizer, setting: bool | dict, batch_size: int, accumulate: int, processes: int
) -> float | None:
    """``train.auto_scale_lr``: multiply every group's lr by total batch / ``base_batch_size`` (MMDetection 3).

    The total batch is ``batch_size x processes x accumulate``. Call it before the
    scheduler is built (schedulers start from the groups' lr). Returns the factor, or
    None when the setting is off.
    """
    options = table_option(setting, AUTO_SCALE_LR_DEFAULTS)
    if options is None:
        return None
    total = batch_size * processes * accumulate
    factor = total / int(options["base_batch_size"])
    before = optimizer.param_groups[0]["lr"]
    for group in optimizer.param_groups:
        group["lr"] *= factor
    print(f"auto_scale_lr: lr {before:g} -> {optimizer.param_groups[0]['lr']:g} (total batch {total} = "
          f"{batch_size} x {processes} process{'es' if processes != 1 else ''} x {accumulate} accumulate; "
          f"base_batch_size {options['base_batch_size']})")
    return factor


def use_channels_last(model: nn.Module) -> nn.Module:
    """``train.channels_last``: 4-d weights in channels-last memory format (faster convolutions with AMP on GPUs)."""
    return model.to(memory_format=torch.channels_last)


def compile_model(model: nn.Module, setting: bool | dict) -> bool:
    """``train.compile``: ``torch.compile`` the backbone (``scope = "backbone"``, the default) or the whole
    detector, heads included (``scope = "model"``), in place; returns whether it did.

    ``nn.Module.compile`` keeps parameter names, so checkpoints do not change. The heads'
    training step has static shapes but for NMS (one graph break); ``mode = "reduce-overhead"``
    adds CUDA graphs to the static parts, and ``pad_multiple`` keeps the input shapes few.
    """
    options = table_option(setting, COMPILE_DEFAULTS)
    if options is None:
        return False
    target = model
    if options["scope"] == "backbone":
        target = getattr(model, "backbone", None)
        if not isinstance(target, nn.Module):
            raise RecipeError(
                f"train.compile: the detector ({type(model).__name__}) has no 'backbone' module to compile; "
                'set scope = "model" to compile all of it'
            )
    target.compile(backend=options["backend"], mode=None if options["mode"] == "default" else options["mode"])
    return True


def build_train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, device: torch.device, train: TrainConfig,
    input_transform=None, decode=None,
) -> TrainStep:
    """The ``TrainStep`` the ``[train]`` table describes, after preparing ``model`` for it.

    Order matters: channels-last weights first, then the EMA copy, then the compiled
    backbone (the EMA copy stays eager: it only evaluates). A DDP wrapper goes around
    the model afterwards (``TrainStep.model``).
    """
    if train.channels_last:
        use_channels_last(model)
    ema_options = table_option(train.ema, EMA_DEFAULTS)
    ema = ModelEMA(model, **ema_options) if ema_options else None
    compile_model(model, train.compile)
    compile_options = table_option(train.compile, COMPILE_DEFAULTS) or COMPILE_DEFAULTS
    return TrainStep(
        model, optimizer, scheduler, device, amp=train.amp, accumulate=train.accumulate, grad_clip=train.grad_clip,
        ema=ema, decode=decode, input_transform=input_transform, channels_last=train.channels_last,
        pad_multiple=int(compile_options["pad_multiple"]),
    )
