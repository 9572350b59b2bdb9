"""MMDetection's optimizer, LR schedule, training loop and runtime hooks as a recipe's ``[train]`` and ``[runtime]``."""

from __future__ import annotations

from typing import Any

from collections.abc import Callable

from detsdk.migrate.ledger import Node, type_of
from detsdk.migrate.mmdet_model import downloaded

OPTIMIZERS = {"SGD": "sgd", "AdamW": "adamw"}


def map_optimizer(root: Node, train: dict[str, Any]) -> None:
    """3.x ``optim_wrapper`` or 2.x ``optimizer`` + ``optimizer_config`` into ``train``."""
    wrapper = root.child("optim_wrapper")
    optimizer = wrapper.child("optimizer") if wrapper is not None else root.child("optimizer")
    clip = None
    if wrapper is not None:
        kind = type_of(wrapper)
        if kind == "AmpOptimWrapper":
            train["amp"] = "fp16"
            wrapper.ignore("loss_scale", "dtype")
        clip = wrapper.child("clip_grad")
        if wrapper.peek("clip_grad", "absent") is None:
            wrapper.ignore("clip_grad")
        if wrapper.peek("accumulative_counts", 1) != 1:
            train["accumulate"] = wrapper.get("accumulative_counts")
        wrapper.ignore("accumulative_counts")
    config = root.child("optimizer_config")
    if config is not None:
        clip = config.child("grad_clip")
        if config.peek("grad_clip", "absent") is None:
            config.ignore("grad_clip")
        config.ignore("type")
        if config.peek("cumulative_iters"):
            train["accumulate"] = config.get("cumulative_iters")
    if root.peek("fp16") is not None:
        root.ledger.use("fp16")
        train["amp"] = "fp16"
    if clip is not None:
        train["grad_clip"] = float(clip.get("max_norm", 0.0))
        clip.expect("norm_type", 2, "det-sdk clips the L2 norm")
    elif "optim_wrapper" in root or "optimizer_config" in root:
        train["grad_clip"] = 0.0
    if optimizer is None:
        return
    kind = type_of(optimizer)
    if kind not in OPTIMIZERS:
        optimizer.ledger.skip(optimizer.at("type"), f"'{kind}': det-sdk's optimizers are SGD and AdamW")
        return
    out: dict[str, Any] = {"type": OPTIMIZERS[kind], "lr": optimizer.get("lr")}
    if kind == "SGD":
        out["momentum"] = optimizer.get("momentum", 0.0)
        out["weight_decay"] = optimizer.get("weight_decay", 0.0)
        if optimizer.get("nesterov", False):
            out["nesterov"] = True
    else:
        out["betas"] = list(optimizer.get("betas", [0.9, 0.999]))
        out["weight_decay"] = optimizer.get("weight_decay", 0.01)
        optimizer.ignore("eps", "amsgrad")
    for holder in (optimizer, wrapper):  # 2.x: inside optimizer; 3.x: beside it in optim_wrapper
        if holder is not None:
            _paramwise(holder, out)
    train["optimizer"] = {k: v for k, v in out.items() if v is not None}


PARAMWISE = ("norm_decay_mult", "bias_decay_mult", "bypass_duplicate")  # train.optimizer.paramwise (#12)


def _paramwise(node: Node, out: dict[str, Any]) -> None:
    paramwise = node.child("paramwise_cfg")
    if paramwise is None:
        return
    kept = {key: paramwise.get(key) for key in PARAMWISE if key in paramwise}
    if kept:
        out["paramwise"] = kept
    for key in paramwise.value:
        if key not in PARAMWISE:
            paramwise.skip(key, f"det-sdk's paramwise takes {', '.join(PARAMWISE)} only")


def map_schedule(root: Node, train: dict[str, Any]) -> None:
    """3.x ``param_scheduler`` / 2.x ``lr_config`` and the loop length into ``train``."""
    _loop(root, train)
    lr = train.get("optimizer", {}).get("lr")
    if "param_scheduler" in root.value:
        _param_schedulers(root.items("param_scheduler"), train, lr)
    elif root.child("lr_config") is not None:
        _lr_config(root.child("lr_config"), train)


def _loop(root: Node, train: dict[str, Any]) -> None:
    loop = root.child("train_cfg")
    if loop is not None and ("type" in loop or "max_epochs" in loop or "max_iters" in loop):
        kind = type_of(loop)
        if kind == "IterBasedTrainLoop" or "max_iters" in loop:
            train["iters"] = loop.get("max_iters")
        else:
            train["epochs"] = loop.get("max_epochs", 12)
        if "val_interval" in loop:
            train["eval_interval"] = loop.get("val_interval")
        if loop.peek("dynamic_intervals"):
            loop.ledger.skip(loop.at("dynamic_intervals"), "det-sdk evaluates at one interval")
        loop.ignore("val_begin")
    runner = root.child("runner")
    if runner is not None:
        if type_of(runner) == "IterBasedRunner":
            train["iters"] = runner.get("max_iters")
        else:
            train["epochs"] = runner.get("max_epochs", 12)
    if root.peek("total_epochs") is not None:
        train["epochs"] = root.get("total_epochs")
    for key in ("val_cfg", "test_cfg"):
        node = root.child(key)
        if node is not None and type_of(node) in ("ValLoop", "TestLoop", ""):
            root.ledger.use(key)


def _param_schedulers(items: list[Node], train: dict[str, Any], lr: float | None) -> None:
    scheduler: dict[str, Any] = {"type": "constant"}
    for item in items:
        kind = type_of(item)
        by_epoch = item.get("by_epoch", True)
        item.ignore("begin", "end", "convert_to_iter_based", "verbose")
        if kind == "LinearLR" and not by_epoch and item.peek("begin", 0) == 0:
            scheduler["warmup_iters"] = item.peek("end")
            scheduler["warmup_ratio"] = item.get("start_factor", 1.0 / 3)
            item.expect("end_factor", 1.0, "det-sdk's warm-up ends at the base lr")
        elif kind == "MultiStepLR":
            scheduler.update(type="step", milestones=list(item.get("milestones")), gamma=item.get("gamma", 0.1),
                             unit="epoch" if by_epoch else "iter")
        elif kind == "CosineAnnealingLR":
            scheduler["type"] = "cosine"
            if item.peek("begin", 0):  # flat, then cosine from `begin` (#12's cosine)
                scheduler.update(begin=item.peek("begin"), unit="epoch" if by_epoch else "iter")
            if "eta_min_ratio" in item:
                scheduler["min_lr_ratio"] = item.get("eta_min_ratio")
            elif lr:
                scheduler["min_lr_ratio"] = item.get("eta_min", 0.0) / lr
            item.ignore("T_max")
        elif kind == "PolyLR":
            scheduler.update(type="poly", power=item.get("power", 1.0))
            if lr and item.peek("eta_min"):
                scheduler["min_lr_ratio"] = item.get("eta_min") / lr
        else:
            item.ledger.skip(item.path, f"{kind} (begin {item.peek('begin', 0)}, by_epoch {by_epoch}): det-sdk's "
                             "schedules are a linear warm-up in iterations then step, cosine or poly over the run")
    train["scheduler"] = scheduler


def _lr_config(config: Node, train: dict[str, Any]) -> None:
    policy = config.get("policy", "step")
    scheduler: dict[str, Any] = {}
    by_epoch = config.get("by_epoch", True)
    if policy == "step":
        step = config.get("step")
        if isinstance(step, int):
            config.ledger.skip(config.at("step"), f"{step}: decay every {step} epochs; det-sdk takes milestones")
            step = []
        scheduler.update(type="step", milestones=list(step or []), gamma=config.get("gamma", 0.1),
                         unit="epoch" if by_epoch else "iter")
    elif policy == "CosineAnnealing":
        scheduler["type"] = "cosine"
        scheduler["min_lr_ratio"] = config.get("min_lr_ratio", 0.0)
        config.skip("min_lr", "det-sdk takes the final lr as a ratio (min_lr_ratio)")
    elif policy == "fixed":
        scheduler["type"] = "constant"
    else:
        config.ledger.skip(config.at("policy"), f"'{policy}': det-sdk's schedules are step, cosine, poly, constant")
        scheduler["type"] = "constant"
    warmup = config.get("warmup")
    if warmup == "linear":
        scheduler["warmup_iters"] = config.get("warmup_iters", 0)
        scheduler["warmup_ratio"] = config.get("warmup_ratio", 0.1)
    elif warmup:
        config.ledger.skip(config.at("warmup"), f"'{warmup}' warm-up: det-sdk's warm-up is linear (set here over "
                           "the same iterations from the same ratio)")
        scheduler["warmup_iters"] = config.get("warmup_iters", 0)
        scheduler["warmup_ratio"] = config.get("warmup_ratio", 0.1)
    else:
        scheduler["warmup_iters"] = 0
    config.expect("warmup_by_epoch", False, "det-sdk counts warm-up in iterations")
    train["scheduler"] = scheduler


def map_runtime(root: Node, train: dict[str, Any], runtime: dict[str, Any],
                pipeline_of: Callable[[list[Node]], list[dict[str, Any]]]) -> None:
    """Checkpoint and log intervals, load_from, resume, EMA, pipeline switch, auto_scale_lr and the seed.

    ``pipeline_of`` maps a pipeline (for ``PipelineSwitchHook``'s second stage).
    """
    hooks = root.child("default_hooks")
    checkpoint = hooks.child("checkpoint") if hooks is not None else root.child("checkpoint_config")
    if checkpoint is not None:
        train["checkpoint_interval"] = checkpoint.get("interval", 1)
        checkpoint.ignore("type", "by_epoch")
        for key in ("max_keep_ckpts", "save_best", "save_last", "out_dir", "rule"):
            checkpoint.skip(key, "det-sdk keeps last.pt and best.pt (by the first metric)")
    logger = hooks.child("logger") if hooks is not None else root.child("log_config")
    if logger is not None:
        train["log_interval"] = logger.get("interval", 50)
        logger.ignore("type", "hooks")
    if hooks is not None:
        for name in ("timer", "param_scheduler", "sampler_seed", "visualization"):
            hooks.ignore(name)
    load_from = str(root.get("load_from") or "")
    runtime["load_from"] = downloaded(root, load_from, "load_from") if "://" in load_from else load_from
    if root.get("resume") or root.get("resume_from"):
        root.ledger.skip("resume" if root.peek("resume") else "resume_from",
                         "resuming is a command-line choice in det-sdk: sdk run RECIPE --resume")
    for hook in root.items("custom_hooks"):
        kind = type_of(hook)
        if kind in ("EMAHook", "ExpMomentumEMAHook"):
            hook.expect("ema_type", "ExpMomentumEMA", "det-sdk's EMA is MMDetection's ExpMomentumEMA")
            train["ema"] = {"momentum": hook.get("momentum", 0.0002), "gamma": hook.get("gamma", 2000),
                            "update_buffers": hook.get("update_buffers", False)}
            hook.ignore("priority", "resume_from", "total_iter", "warm_up", "interval", "strict_load")
        elif kind == "PipelineSwitchHook":
            # MMEngine's switch_epoch counts completed epochs (0-based); det-sdk's is the first 1-based epoch switched.
            stage = {"type": "pipeline_switch", "switch_epoch": int(hook.get("switch_epoch")) + 1,
                     "pipeline": pipeline_of(hook.items("switch_pipeline"))}
            train.setdefault("hooks", []).append(stage)
            hook.ignore("priority")
        elif kind in ("NumClassCheckHook", "CheckInvalidLossHook"):
            hook.ledger.use(hook.path)  # det-sdk checks class counts and losses itself
        else:
            hook.ledger.skip(hook.path, f"hook '{kind}' has no det-sdk counterpart here (det-sdk hooks: train.hooks)")
    scale = root.child("auto_scale_lr")
    if scale is not None:
        if scale.get("enable", False):
            train["auto_scale_lr"] = {"base_batch_size": scale.get("base_batch_size", 16)}
        scale.ignore("base_batch_size")
    randomness = root.child("randomness")
    if randomness is not None:
        if randomness.peek("seed") is not None:
            runtime["seed"] = randomness.get("seed")
        if randomness.get("deterministic", False):
            runtime["deterministic"] = True
        randomness.ignore("seed", "diff_rank_seed")
    if root.peek("work_dir"):
        runtime["work_dir"] = root.get("work_dir")
    if root.peek("custom_imports"):
        root.ledger.skip("custom_imports", "det-sdk finds plugins by their entry points: pip install the plugin "
                         "that provides these components")
