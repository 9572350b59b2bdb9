"""An MMDetection config file as a det-sdk recipe, with every key that did not carry over and why.

    >>> migration = convert_mmdet_config("configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py")  # doctest: +SKIP
    >>> migration.recipe["train"]["scheduler"]["milestones"], migration.unmapped[:1]  # doctest: +SKIP
    ([8, 11], [Unmapped(path='...', reason='...')])

``write_recipe`` writes it as TOML that starts with a comment naming the source config and
lists the notes and the unmapped keys as comments.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import attrs

from detsdk.migrate.config_reader import read_config
from detsdk.migrate.ledger import Ledger, Node, Unmapped, UnsupportedConfigError
from detsdk.migrate.mmdet_data import map_dataset, map_evaluator, map_evaluators, map_pipeline, preprocessor_steps
from detsdk.migrate.mmdet_model import map_model
from detsdk.migrate.mmdet_schedule import map_optimizer, map_runtime, map_schedule
from detsdk.migrate.recipe_toml import recipe_toml

# Top-level names MMDetection itself reads; any other top-level name is a helper variable
# (dataset_type, data_root, img_norm_cfg, train_pipeline, ...), read where the config uses it.
SETTINGS = (
    "model", "data", "train_dataloader", "val_dataloader", "test_dataloader", "optimizer", "optimizer_config",
    "optim_wrapper", "param_scheduler", "lr_config", "runner", "train_cfg", "val_cfg", "test_cfg", "evaluation",
    "val_evaluator", "test_evaluator", "checkpoint_config", "log_config", "default_hooks", "custom_hooks",
    "load_from", "resume", "resume_from", "auto_scale_lr", "fp16", "total_epochs", "randomness", "work_dir",
    "custom_imports", "tta_model", "tta_pipeline",
)
# Settings that steer MMDetection's runner and have nothing to do in a recipe.
RUNNER_ONLY = ("default_scope", "env_cfg", "vis_backends", "visualizer", "log_processor", "log_level",
               "dist_params", "workflow", "opencv_num_threads", "mp_start_method", "launcher", "gpu_ids")


@attrs.define
class Migration:
    """A converted config: the recipe data, what did not carry over, notes, and the files read."""

    source: Path
    version: str  # "2.x" or "3.x"
    recipe: dict[str, Any]
    unmapped: list[Unmapped]
    notes: list[str]
    files: list[Path]
    helpers: list[str]  # top-level helper variables (read where referenced)


def convert_mmdet_config(path: str | Path) -> Migration:
    """Read an MMDetection 2.x/3.x config as data and map it to recipe data; nothing in it is run."""
    config = read_config(path)
    data = config.data
    ledger = Ledger()
    root = Node(ledger, "", data)
    version = "3.x" if any(k in data for k in ("train_dataloader", "optim_wrapper", "param_scheduler")) else "2.x"
    train: dict[str, Any] = {}
    runtime: dict[str, Any] = {}
    model_node = root.child("model")
    if model_node is None:
        raise UnsupportedConfigError(f"{path}: no 'model' in the config (nor in its _base_ files)")
    recipe: dict[str, Any] = {"model": map_model(model_node, train)}
    device_steps = preprocessor_steps(model_node) or []
    recipe["data"], metric = _map_data(root, device_steps, train, version == "3.x")
    map_optimizer(root, train)
    map_schedule(root, train)
    flags = {"v3": version == "3.x"}
    map_runtime(root, train, runtime, lambda items: _with_device_steps(map_pipeline(items, dict(flags)), device_steps))
    for key in ("tta_model", "tta_pipeline"):
        root.skip(key, "test-time augmentation is eval.tta in det-sdk (docs/tta.md)")
    eval_table: dict[str, Any] = {}
    if metric is not None:
        eval_table["metric"] = metric
    val = root.child("val_dataloader")
    if val is not None and "batch_size" in val:
        eval_table["batch_size"] = val.get("batch_size")
    recipe["train"] = train
    if eval_table:
        recipe["eval"] = eval_table
    recipe["runtime"] = runtime
    for key in RUNNER_ONLY:
        root.ignore(key)
    for key in SETTINGS:
        if key in data:
            ledger.leftovers(data[key], key)
    helpers = [k for k in data if k not in SETTINGS and k not in RUNNER_ONLY]
    return Migration(Path(path), version, recipe, ledger.unmapped, ledger.notes, config.files, helpers)


def _map_data(root: Node, device_steps: list[dict], train: dict[str, Any], v3: bool) -> tuple[dict[str, Any], dict | None]:
    out: dict[str, Any] = {}
    old = root.child("data")
    if old is not None:  # 2.x: data = dict(samples_per_gpu=..., train=..., val=..., test=...)
        out["batch_size"] = old.get("samples_per_gpu", 2)
        out["num_workers"] = old.get("workers_per_gpu", 2)
        old.ignore("persistent_workers")
        for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
            settings = old.child(loader)
            if settings is not None:
                settings.ignore("samples_per_gpu", "workers_per_gpu", "shuffle", "persistent_workers")
        splits = {split: old.child(split) for split in ("train", "val", "test")}
    else:
        splits = {}
        for split in ("train", "val", "test"):
            loader = root.child(f"{split}_dataloader")
            if loader is None:
                continue
            if split == "train":
                out["batch_size"] = loader.get("batch_size", 2)
                out["num_workers"] = loader.get("num_workers", 2)
                if loader.peek("persistent_workers") is not None:
                    out["persistent_workers"] = loader.get("persistent_workers")
                batch_sampler = loader.child("batch_sampler")
                if batch_sampler is not None and batch_sampler.get("type") == "AspectRatioBatchSampler":
                    out["group_by_aspect_ratio"] = True
            loader.ignore("num_workers", "persistent_workers", "drop_last", "sampler", "batch_sampler",
                          "pin_memory", "batch_size", "collate_fn")
            splits[split] = loader.child("dataset")
    for split, node in splits.items():
        if node is None:
            continue
        pipeline: list[dict[str, Any]] = []
        flags: dict[str, Any] = {"v3": v3}
        table = map_dataset(node, pipeline, flags, train=split == "train")
        if flags.get("with_masks"):
            _set_masks(table)
        elif split != "train" and "train" in out and _has_masks(out["train"]):
            _set_masks(table)  # MMDetection evaluates masks without loading them in the test pipeline
        if table["type"] in ("cityscapes",) and not flags.get("with_masks") and not _has_masks(table):
            _set_masks(table, False)
        table["pipeline"] = _with_device_steps(pipeline, device_steps)
        out[split] = table
    evaluation = root.child("evaluation")
    if evaluation is not None:
        if "interval" in evaluation:
            train["eval_interval"] = evaluation.get("interval")
        for key in ("save_best", "rule"):
            evaluation.skip(key, "det-sdk picks best.pt by the first metric")
        metric = map_evaluator(None, evaluation.get("metric"))
    else:
        metric = map_evaluators(root.items("val_evaluator")) if "val_evaluator" in root else None
        test = root.child("test_evaluator")
        if test is not None:
            root.ledger.use("test_evaluator")
    return out, metric


def _with_device_steps(pipeline: list[dict[str, Any]], steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The 3.x data preprocessor's normalize (and pad) after the transforms, unless they normalise already."""
    if any(step["type"] == "normalize" for step in pipeline):
        return pipeline
    return pipeline + steps


def _leaf_tables(table: dict[str, Any]):
    if "dataset" in table:
        yield from _leaf_tables(table["dataset"])
    elif "datasets" in table:
        for inner in table["datasets"]:
            yield from _leaf_tables(inner)
    else:
        yield table


def _set_masks(table: dict[str, Any], value: bool = True) -> None:
    for leaf in _leaf_tables(table):
        if leaf["type"] in ("coco", "cityscapes"):
            leaf["with_masks"] = value


def _has_masks(table: dict[str, Any]) -> bool:
    return any(leaf.get("with_masks") for leaf in _leaf_tables(table))


def recipe_text(migration: Migration) -> str:
    """The recipe as TOML, opened by comments: the source config, notes and every unmapped key."""
    lines = [f"# Converted from MMDetection {migration.version} config {migration.source} by "
             "`sdk convert mmdet-config` (read as data, never run).",
             f"# Files read: {', '.join(p.name for p in migration.files)}."]
    if migration.helpers:
        lines.append(f"# Helper variables, read where the config uses them: {', '.join(migration.helpers)}.")
    if migration.notes:
        lines.append("# Notes (close, not exact):")
        lines += [f"#   {note}" for note in migration.notes]
    lines.append(f"# Not carried over ({len(migration.unmapped)}):")
    lines += [f"#   {item}" for item in migration.unmapped]
    return "\n".join(lines) + "\n\n" + recipe_toml(migration.recipe)


def write_recipe(migration: Migration, out: str | Path) -> None:
    """Write the recipe atomically (a temp file, then rename): no half-written file on failure."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = recipe_text(migration)
    handle, temp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
