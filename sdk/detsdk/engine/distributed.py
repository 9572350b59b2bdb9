"""Process groups for ``torchrun``: join at the start, talk to the other ranks, leave at the end.

``torchrun`` (``torch.distributed.run``) starts one process per device and
tells each who it is through ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; ``setup`` reads them. Without them (a
plain ``sdk run``) there is one process and every helper here acts as the
only rank of a world of one, so the engine's code is the same either way.

    >>> device = setup(torch.device("cpu"))      # doctest: +SKIP
    >>> if is_main_process(): print("only rank 0 writes files")
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from detsdk.errors import RecipeError, TrainingError, warn

DEFAULT_TIMEOUT_S = 600.0  # longer than anything rank 0 does alone (COCO eval, plots) on a big val set


def launched_by_torchrun() -> bool:
    """True inside a process ``torchrun`` started (it sets ``LOCAL_RANK`` and ``WORLD_SIZE``)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> torch.device:
    """Join the process group ``torchrun`` describes (once) and return this rank's device.

    NCCL on CUDA, each rank on ``cuda:LOCAL_RANK``; gloo on the CPU. Every
    collective gives up after ``timeout_s`` seconds, so a rank that stops
    answering ends the run with an error instead of a hang. With one process
    (no ``torchrun``, or ``--nproc-per-node 1``) nothing happens.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise RecipeError(
                f"rank {os.environ.get('RANK', '?')} has local rank {local_rank} but this node has {count} CUDA "
                f"device(s): start at most {count} processes per node (--nproc {count}), or use --device cpu"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=device if device.type == "cuda" else None,
        )
    return device


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """How many processes train together (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, the one process that writes logs, checkpoints, metrics and plots."""
    return get_rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (no-op with one process)."""
    if get_world_size() > 1:
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_object(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0; ``None`` on the other ranks."""
    if get_world_size() == 1:
        return [obj]
    gathered: list[Any] | None = [None] * get_world_size() if is_main_process() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (the other ranks' argument is ignored)."""
    if get_world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def broadcast_weights(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers into ``module`` on every rank, in place.

    DDP keeps the trained parameters equal, but not what lives beside them:
    BatchNorm statistics, and an EMA copy taken before DDP's first sync. After
    this, every rank evaluates exactly the weights rank 0 checkpoints.
    """
    if get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def lost_contact(exc: BaseException) -> bool:
    """True for a collective that failed because another rank is gone (it failed first, or was stopped)."""
    if isinstance(exc, dist.DistNetworkError):
        return True
    return any(text in str(exc) for text in ("Connection closed by peer", "Connection reset by peer"))


def timed_out(exc: BaseException) -> bool:
    """True for a collective that gave up after ``runtime.dist_timeout``: another rank stopped answering."""
    return "timed out" in str(exc).lower()


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``train.sync_bn``: BatchNorm layers that average their statistics over every rank's batch.

    Only meaningful with several processes; PyTorch's SyncBatchNorm runs on
    GPUs only, so on the CPU the layers stay per-process BatchNorm (with a warning).
    """
    if get_world_size() == 1:
        return model
    if device.type != "cuda":
        if is_main_process():
            warn("train.sync_bn: SyncBatchNorm needs CUDA; on the CPU each process keeps its own BatchNorm statistics")
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


class DetectorDDP(DistributedDataParallel):
    """DDP whose "unused parameters" failure names the recipe key that fixes it."""

    def forward(self, *inputs, **kwargs):
        try:
            return super().forward(*inputs, **kwargs)
        except RuntimeError as exc:
            if "find_unused_parameters" not in str(exc) or self.find_unused_parameters:
                raise
            raise TrainingError(
                "some trainable parameters got no gradient in the last iteration, which DDP cannot average; "
                "set train.find_unused_parameters = true (or freeze those parameters)"
            ) from None


def wrap_model(
    model: nn.Module, device: torch.device, find_unused_parameters: bool = False, comm: str = "none",
    bucket_mb: int = 25,
) -> nn.Module:
    """The module that training calls: ``model`` itself with one process, else a DDP wrapper around it.

    DDP averages gradients over ranks during ``backward``, in buckets of ``bucket_mb``
    megabytes (``train.ddp_bucket_mb``); ``comm = "fp16" | "bf16"`` (``train.ddp_comm``)
    sends them compressed to 16 bits and decompresses the average (DDP's comm hooks),
    halving the bytes each all-reduce moves. Buffers are synced once, at the start, not
    before every forward (Detectron2's choice): checkpoints come from rank 0, and
    ``broadcast_weights`` aligns every rank with it before evaluation.
    """
    if get_world_size() == 1:
        return model
    wrapped = DetectorDDP(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        forward_sync_buffers=False,
        gradient_as_bucket_view=True,  # gradients live in the all-reduce buckets: one copy less per step
        find_unused_parameters=find_unused_parameters,
        bucket_cap_mb=bucket_mb,
    )
    if comm != "none":
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        hook = {"fp16": default_hooks.fp16_compress_hook, "bf16": default_hooks.bf16_compress_hook}[comm]
        wrapped.register_comm_hook(state=None, hook=hook)
    return wrapped


def destroy() -> None:
    """Leave the process group after every rank has finished (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        barrier()
        dist.destroy_process_group()
