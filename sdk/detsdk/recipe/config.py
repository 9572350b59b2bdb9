"""The recipe's ``[train]``, ``[data]``, ``[runtime]`` and ``[eval]`` tables as typed values.

Each field's default is the recipe default (``detsdk.recipe.schema.DEFAULTS`` is
made from these classes: one source of defaults). After validation,
``RecipeConfig.from_tables(with_defaults(recipe.data))`` gives the engine typed
values instead of ``int(config["x"])`` reads.

    >>> TrainConfig().epochs
    12
"""

from __future__ import annotations

from typing import Any

import attrs

DATA_SPLITS = ("train", "val", "test")


def _table(**values: Any):
    return attrs.field(factory=lambda: dict(values))


@attrs.define(kw_only=True)
class DataConfig:
    """``[data]`` (the split tables stay dicts: ``train``, ``val``, ``test``)."""

    batch_size: int = 2
    num_workers: int = 2
    pin_memory: bool = True  # page-locked batches, when training on CUDA
    persistent_workers: bool = True  # keep the loader's workers between epochs (with num_workers > 0)
    prefetch_factor: int = 2  # batches each worker loads ahead (with num_workers > 0)
    # Ship uint8 images and normalise on the device when the train pipeline ends with normalize [+ pad].
    normalize_on_device: bool | str = "auto"  # "auto": on when training on CUDA
    # Workers read image files undecoded; decode, resize, flip, normalize and pad run on the device (nvJPEG on CUDA).
    decode_on_device: bool = False
    group_by_aspect_ratio: bool = False  # batch wide (w >= h) and tall images apart (docs/distributed.md)
    train: dict | None = None
    val: dict | None = None
    test: dict | None = None


@attrs.define(kw_only=True)
class TrainConfig:
    """``[train]``."""

    epochs: int = 12
    iters: int = 0  # > 0: iteration-based training; intervals below count iterations
    optimizer: dict = _table(type="sgd", lr=0.02, momentum=0.9, weight_decay=1e-4)
    scheduler: dict = _table(type="constant")
    # 0: every epoch when training by epochs; only at the end when training by iterations.
    eval_interval: int = 0
    checkpoint_interval: int = 0
    log_interval: int = 20
    grad_clip: float = attrs.field(default=0.0, converter=float)  # max gradient norm; 0 turns clipping off
    checkpoint_every_iters: int = 0  # > 0: also write last.pt every N iterations (exact mid-epoch resume)
    best_metric: str = ""  # the metric that picks best.pt (larger is better); "": the metric's first
    max_keep_ckpts: int = 0  # > 0: also keep the newest N interval checkpoints as epoch_<N>.pt / iter_<N>.pt
    # Precision and optimisation (docs/training.md; shapes checked by detsdk.recipe.options).
    amp: bool | str = False  # "bf16" | "fp16" | false
    accumulate: int = 1  # micro-batches per iteration (one optimizer step)
    ema: bool | dict = False  # false | true | { momentum = 0.0002, gamma = 2000, update_buffers = true }
    channels_last: bool = False
    compile: bool | dict = False  # false | true | { backend, mode, scope = "backbone" | "model", pad_multiple = 0 }
    auto_scale_lr: bool | dict = False  # false | true | { base_batch_size = 16 }
    # Distributed (torchrun; docs/distributed.md): BatchNorm statistics over all ranks (CUDA), and
    # DDP for detectors whose trainable parameters do not all get a gradient every iteration.
    sync_bn: bool = False
    find_unused_parameters: bool = False
    ddp_comm: str = "none"  # "fp16" | "bf16": DDP all-reduces gradients compressed (comm hook)
    ddp_bucket_mb: int = 25  # DDP's gradient bucket size (bucket_cap_mb)
    # Hook tables run in this order, after the engine's own work for the same event (DESIGN.md "Hooks").
    hooks: list = attrs.field(factory=list)  # e.g. [{ type = "early_stopping", monitor = "bbox_mAP" }]

    @property
    def by_iterations(self) -> bool:
        """``iters > 0``: the run counts iterations, and so do its intervals."""
        return self.iters > 0


@attrs.define(kw_only=True)
class EvalConfig:
    """``[eval]``."""

    metric: dict = _table(type="coco")
    batch_size: int = 0  # 0: data.batch_size
    tta: dict = attrs.field(factory=dict)  # {}: off (see detsdk.recipe.tta_options for its keys)
    slice: dict = attrs.field(factory=dict)  # {}: off (see detsdk.recipe.slice_options for its keys)


@attrs.define(kw_only=True)
class RuntimeConfig:
    """``[runtime]``."""

    work_dir: str = ""
    seed: int = 0
    load_from: str = ""  # a det-sdk, torchvision or MMDetection checkpoint to start from
    device: str = "auto"
    plot_samples: int = 8
    deterministic: bool = False  # deterministic algorithms and cuDNN: the same run gives the same weights
    tensorboard: bool = False  # write <work_dir>/tensorboard (pip install 'det-sdk[tensorboard]')
    dist_timeout: float = attrs.field(default=600.0, converter=float)  # seconds a collective may wait


TABLES = {"data": DataConfig, "train": TrainConfig, "eval": EvalConfig, "runtime": RuntimeConfig}


@attrs.define(kw_only=True)
class RecipeConfig:
    """The typed tables of a validated recipe (``[model]`` stays the dict the builders take)."""

    train: TrainConfig
    data: DataConfig
    eval: EvalConfig
    runtime: RuntimeConfig

    @classmethod
    def from_tables(cls, config: dict) -> RecipeConfig:
        """From a validated recipe with its defaults filled in (``with_defaults``)."""
        return cls(**{name: kind(**config[name]) for name, kind in TABLES.items()})


def table_defaults(kind: type) -> dict[str, Any]:
    """A table's recipe defaults, from its class's fields (the data splits, which default to none, left out)."""
    defaults = {}
    for field in attrs.fields(kind):
        if field.name in DATA_SPLITS and kind is DataConfig:
            continue
        defaults[field.name] = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
    return defaults
