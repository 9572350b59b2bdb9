"""``Engine``: one recipe, trained, evaluated and used for prediction.

The loop is short on purpose (Detectron2's SimpleTrainer): fetch, forward,
check the loss, backward, step. Logging, checkpoints and evaluation happen
between iterations; plugins observe through the ``detsdk_*`` event hooks.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from detsdk import __version__
from detsdk.data.device_normalize import defer_normalize
from detsdk.data.loader import PipelineDataset, build_loader
from detsdk.data.samplers import aspect_ratio_groups
from detsdk.engine import build, distributed
from detsdk.engine.checkpoint import (
    load_checkpoint,
    load_weights_from,
    model_state_of,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from detsdk.engine.device import resolve_device
from detsdk.engine.evaluation import run_evaluation
from detsdk.engine.interop import to_detsdk
from detsdk.engine.plots import draw_detections, plot_curves, save_grid
from detsdk.engine.predictor import Detector, inference_pipeline_spec
from detsdk.engine.run_log import RunLog, write_metrics
from detsdk.engine.train_setup import build_train_step, enable_deterministic, scale_learning_rate, world_size
from detsdk.engine.loss_readout import LossReadout, read_losses
from detsdk.engine.train_step import TrainStep, iteration_batches
from detsdk.engine.tta import evaluate_with_tta, tta_settings
from detsdk.errors import CheckpointError, DataError, RecipeError
from detsdk.plugins import get_registry
from detsdk.plugins.build import build_component
from detsdk.recipe import Recipe, dump_recipe, load_recipe, validate_recipe, with_defaults


class Engine:
    """Train, evaluate and predict with the detector a recipe describes.

    >>> engine = Engine.from_recipe("recipe.toml", overrides=["train.epochs=1"])  # doctest: +SKIP
    >>> metrics = engine.fit()                                                    # doctest: +SKIP
    """

    def __init__(self, recipe: Recipe, work_dir: str | Path | None = None, device: str | None = None):
        validate_recipe(recipe)
        self.recipe = recipe
        self.config = with_defaults(recipe.data)
        runtime = self.config["runtime"]
        self.work_dir = Path(work_dir or runtime["work_dir"] or Path("runs") / recipe.stem)
        # Under torchrun this joins the process group; each rank then has its own GPU (or gloo on the CPU).
        self.device = distributed.setup(resolve_device(device or runtime["device"]), float(runtime["dist_timeout"]))
        self.registry = get_registry()
        self.log = RunLog(self.work_dir, enabled=distributed.is_main_process())
        self.model: torch.nn.Module | None = None
        self.train_model: torch.nn.Module | None = None  # set by fit(): the model, or its DDP wrapper
        self.classes: list[str] = []
        self.cat_ids: list[int] | None = None
        self.iteration = 0
        self.epoch = 0
        self.metrics: dict[str, float] = {}
        self.best_score = -math.inf
        self.train_step: TrainStep | None = None  # set by fit(): precision, accumulation, clipping, EMA
        self._datasets: dict[tuple[str, bool], Any] = {}

    @classmethod
    def from_recipe(
        cls,
        source: str | Path | Mapping,
        overrides: Iterable[str] = (),
        work_dir: str | Path | None = None,
        device: str | None = None,
    ) -> Engine:
        """Load a recipe file or dict, apply ``key=value`` overrides, validate it and make an engine."""
        return cls(load_recipe(source, overrides), work_dir=work_dir, device=device)

    # -- parts ------------------------------------------------------------
    def dataset(self, split: str, keep_annotations: bool = False):
        """The ``data.<split>`` dataset wrapped with its pipeline (built once)."""
        key = (split, keep_annotations)
        if key not in self._datasets:
            spec = self.config["data"].get(split)
            if spec is None:
                raise RecipeError(f"{self.recipe.source_of('data')}: no data.{split} table in the recipe")
            self._datasets[key] = build.build_pipeline_dataset(spec, f"data.{split}", keep_annotations)
        return self._datasets[key]

    def _eval_split(self, prefer: tuple[str, ...]) -> str | None:
        return next((s for s in prefer if self.config["data"].get(s) is not None), None)

    def _ensure_model(self, classes: list[str], classes_source: str, dataset=None) -> torch.nn.Module:
        if self.model is None:
            if "type" not in self.config["model"]:
                raise RecipeError(f"{self.recipe.source_of('model')}: the recipe has no [model] table with a 'type'")
            num_classes = build.resolve_num_classes(self.recipe, classes, classes_source)
            self.model = build.build_model(self.config["model"], num_classes).to(self.device)
            self.classes = list(classes)
            self.cat_ids = list(getattr(dataset, "cat_ids", None) or []) or None
        return self.model

    def _seed(self) -> None:
        # Each rank draws its own random numbers; DDP gives every rank rank 0's initial weights.
        seed = int(self.config["runtime"]["seed"]) + distributed.get_rank()
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if self.config["runtime"]["deterministic"]:
            enable_deterministic()

    # -- training ---------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, float]:
        """Train, evaluating every ``eval_interval`` and at the end; returns the last metrics."""
        self._seed()
        train_config = self.config["train"]
        train_set = self.dataset("train")
        classes = list(train_set.dataset.classes)
        model = self._ensure_model(classes, f"data.train ({self.config['data']['train']['type']})", train_set.dataset)
        eval_split = self._eval_split(("val", "test"))
        if eval_split:
            self._check_same_classes(eval_split)
        batch_size = int(self.config["data"]["batch_size"])
        train_set, device_normalize = self._train_set(train_set)
        data_config = self.config["data"]
        loader = build_loader(
            train_set, batch_size, int(data_config["num_workers"]), shuffle=True,
            seed=int(self.config["runtime"]["seed"]), pin_memory=data_config["pin_memory"] and self.device.type == "cuda",
            persistent_workers=data_config["persistent_workers"], prefetch_factor=int(data_config["prefetch_factor"]),
            rank=distributed.get_rank(), world_size=distributed.get_world_size(),
            group_ids=aspect_ratio_groups(train_set.dataset) if self.config["data"]["group_by_aspect_ratio"] else None,
        )
        accumulate = int(train_config["accumulate"])
        iters_per_epoch = math.ceil(len(loader) / accumulate)  # an iteration is one optimizer step
        if iters_per_epoch == 0:
            raise DataError(f"data.train: the training dataset is empty ({self.config['data']['train']['type']})")
        iteration_based = int(train_config["iters"]) > 0
        total_iters = int(train_config["iters"]) if iteration_based else int(train_config["epochs"]) * iters_per_epoch
        if train_config["sync_bn"]:
            self.model = model = distributed.convert_sync_batchnorm(model, self.device)
        optimizer = build.build_optimizer(train_config["optimizer"], model)
        scale_learning_rate(optimizer, train_config["auto_scale_lr"], batch_size, accumulate, world_size())
        scheduler = build.build_scheduler(train_config["scheduler"], optimizer, total_iters, iters_per_epoch)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_step = build_train_step(model, optimizer, scheduler, self.device, train_config, device_normalize)
        self.total_iters, self.iters_per_epoch = total_iters, iters_per_epoch

        if resume:
            self._resume()
        elif self.config["runtime"]["load_from"]:
            load_weights_from(model, self.config["runtime"]["load_from"])
        # What training calls: the model, or its DDP wrapper; evaluation and checkpoints use the model.
        self.train_model = distributed.wrap_model(
            model, self.device, bool(train_config["find_unused_parameters"]),
            comm=train_config["ddp_comm"], bucket_mb=int(train_config["ddp_bucket_mb"]),
        )
        self.train_step.model = self.train_model
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if distributed.is_main_process():
            if not resume:
                self.log.path.unlink(missing_ok=True)  # a fresh run starts a fresh log
            (self.work_dir / "recipe.toml").write_text(dump_recipe(self.config), encoding="utf-8")

        self.registry.call_hook("detsdk_on_train_start", engine=self)
        evaluated_at = self._train_loop(loader, batch_size * accumulate, eval_split)
        if eval_split and evaluated_at != self.iteration:  # a resumed run that had already finished
            self._evaluate_during_training(eval_split)
        if not eval_split:
            self.save("best.pt")  # nothing to rank checkpoints by: the last one is the best we know
        self._plot(eval_split or "train")
        self.registry.call_hook("detsdk_on_train_end", engine=self)
        return self.metrics

    def _train_set(self, train_set: PipelineDataset):
        """The training data as the loader sees it: samples seeded by (seed, epoch, index), uint8 when
        normalisation runs on the device; returns it and the device normalisation (or None)."""
        setting = self.config["data"]["normalize_on_device"]
        device_normalize = None
        transforms = train_set.transforms
        if setting is True or (setting == "auto" and self.device.type == "cuda"):
            transforms, device_normalize = defer_normalize(transforms)
        train_set = PipelineDataset(train_set.dataset, transforms)
        train_set.seed_samples(int(self.config["runtime"]["seed"]))
        return train_set, device_normalize

    def _train_loop(self, loader, batch_size: int, eval_split: str | None) -> int:
        """Iterate until ``total_iters``; returns the iteration of the last evaluation (-1: none).

        ``batch_size`` is the number of samples an iteration takes from the sampler.
        """
        train_config = self.config["train"]
        iteration_based = int(train_config["iters"]) > 0

        def interval(key: str) -> int:
            value = int(train_config[key])
            return value if value > 0 else (self.total_iters if iteration_based else 1)

        eval_every, checkpoint_every = interval("eval_interval"), interval("checkpoint_interval")
        every_iters = int(train_config["checkpoint_every_iters"])
        step_log = _StepLog(self.log, max(1, int(train_config["log_interval"])))
        evaluated_at = -1
        self.model.train()
        with tqdm(total=self.total_iters, initial=self.iteration, desc="train", dynamic_ncols=True,
                  disable=not distributed.is_main_process()) as progress:
            while self.iteration < self.total_iters:
                epoch_index, offset = divmod(self.iteration, self.iters_per_epoch)
                loader.sampler.set_epoch(epoch_index, offset * batch_size)
                loader.dataset.set_epoch(epoch_index)
                for batches in iteration_batches(loader, self.train_step.accumulate):
                    losses = self._train_step(batches)
                    self.iteration += 1
                    lr = self.optimizer.param_groups[0]["lr"]
                    progress.update(1)
                    self.registry.call_hook("detsdk_after_train_iter", engine=self, iteration=self.iteration, losses=losses)
                    finished = self.iteration >= self.total_iters
                    means = step_log.add(losses, epoch_index + 1, self.iteration, lr, force=finished)
                    if means:  # losses are read once per log interval (one device sync)
                        progress.set_postfix(loss=f"{means['loss']:.3f}", lr=f"{lr:.2e}", refresh=False)
                    epoch_ended = self.iteration % self.iters_per_epoch == 0 or finished
                    if epoch_ended:
                        self.epoch = math.ceil(self.iteration / self.iters_per_epoch)
                        self.registry.call_hook("detsdk_after_epoch", engine=self, epoch=self.epoch)
                    # Intervals count iterations when training by iterations, else epochs.
                    count, due_now = (self.iteration, True) if iteration_based else (self.epoch, epoch_ended)
                    if (due_now and (count % checkpoint_every == 0 or finished)) or (
                        every_iters and self.iteration % every_iters == 0
                    ):
                        step_log.check()  # a NaN since the last read stops the run before it is saved
                        self.save("last.pt")
                    if eval_split and due_now and (count % eval_every == 0 or finished):
                        step_log.check()
                        self._evaluate_during_training(eval_split)
                        evaluated_at = self.iteration
                    if finished:
                        break
        return evaluated_at

    def _train_step(self, batches: list) -> LossReadout:
        """One iteration (see ``detsdk.engine.train_step``); its loss terms averaged over ranks, on the device."""
        return self.train_step(batches, self.iteration + 1, self.iteration // self.iters_per_epoch + 1)

    @property
    def inference_model(self) -> torch.nn.Module:
        """The weights evaluation and prediction use: the EMA's when ``train.ema`` is on, else the model."""
        ema = self.train_step.ema if self.train_step is not None else None
        return ema.module if ema is not None else self.model

    def _check_same_classes(self, split: str) -> None:
        other = list(self.dataset(split, keep_annotations=True).dataset.classes)
        if other != self.classes:
            raise RecipeError(
                f"data.{split} has classes {other[:8]} but data.train has {self.classes[:8]}: "
                "evaluation needs the same classes in the same order"
            )

    def _evaluate_during_training(self, split: str) -> None:
        metrics = self._evaluate_split(split)
        primary = next(iter(metrics.values()), None)
        if primary is not None and primary > self.best_score:
            self.best_score = primary
            self.save("best.pt")
        self._plot(split)

    # -- checkpoints ------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to resume or to rebuild the detector, in ``weights_only``-safe types."""
        state = {
            "model": self.model.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "rng": rng_states(),
            "recipe": dump_recipe(self.config),
            "classes": list(self.classes),
            "cat_ids": self.cat_ids,
            "metrics": dict(self.metrics),
            "best_score": self.best_score if math.isfinite(self.best_score) else None,
            "version": __version__,
            "scaler": None,
        }
        if getattr(self, "optimizer", None) is not None:
            state["optimizer"] = self.optimizer.state_dict()
            state["scheduler"] = self.scheduler.state_dict()
        if self.train_step is not None:  # scaler, EMA (and the averaged weights as "model")
            state.update(self.train_step.checkpoint_entries(state["model"]))
        return state

    def save(self, name: str) -> Path:
        """Write a checkpoint into the work dir atomically."""
        path = self.work_dir / name
        if distributed.is_main_process():
            save_checkpoint(path, self.checkpoint_state())
        return path

    def _resume(self) -> None:
        path = self.work_dir / "last.pt"
        if not path.exists():
            raise CheckpointError(f"--resume: no checkpoint to resume from at {path}")
        state = load_checkpoint(path)
        self.train_step.restore(state)  # training weights, EMA, scaler
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration, self.epoch = int(state["iteration"]), int(state["epoch"])
        self.metrics = dict(state.get("metrics") or {})
        if state.get("best_score") is not None:
            self.best_score = float(state["best_score"])
        restore_rng_states(state["rng"])
        self.log.drop_after(self.iteration)  # the steps after the checkpoint are trained again
        print(f"resumed from {path} at iteration {self.iteration} (epoch {self.epoch})")

    # -- evaluation -------------------------------------------------------
    def evaluate(self, checkpoint: str | Path | None = None, split: str | None = None) -> dict[str, float]:
        """Evaluate on ``split`` (default: test, else val), optionally with a checkpoint's weights."""
        split = split or self._eval_split(("test", "val"))
        if split is None:
            raise RecipeError(f"{self.recipe.source_of('data')}: no data.test or data.val table to evaluate on")
        dataset = self.dataset(split, keep_annotations=True).dataset
        model = self._ensure_model(list(dataset.classes), f"data.{split} ({self.config['data'][split]['type']})", dataset)
        if checkpoint is not None:
            # det-sdk, torchvision and MMDetection files alike: names are converted, then all must fit.
            conversion = to_detsdk(model_state_of(load_checkpoint(checkpoint)))
            if conversion.unplaced:
                raise CheckpointError(
                    f"{checkpoint}: {len(conversion.unplaced)} {conversion.source_format} weights have no det-sdk "
                    f"counterpart: {', '.join(conversion.unplaced[:5])}"
                )
            try:
                model.load_state_dict(conversion.weights)
            except RuntimeError as exc:
                raise CheckpointError(
                    f"{checkpoint}: weights do not fit the recipe's model ({str(exc).splitlines()[0]})"
                ) from None
        tta = tta_settings(self.config["eval"]["tta"])
        if tta is not None:  # [eval] tta: here and in predict(), not in the evaluations during fit()
            eval_set = self.dataset(split, keep_annotations=True)
            batch_size = int(self.config["eval"]["batch_size"] or self.config["data"]["batch_size"])
            metrics = evaluate_with_tta(self.inference_model, eval_set, self._build_metric(eval_set.dataset), self.device,
                                        tta, batch_size, int(self.config["data"]["num_workers"]))
            return self._record_metrics(split, metrics)
        return self._evaluate_split(split)

    def _build_metric(self, dataset):
        metric = build_component("metric", self.config["eval"]["metric"], where="eval.metric")
        if hasattr(metric, "bind_dataset"):
            metric.bind_dataset(dataset)
        return metric

    def _evaluate_split(self, split: str) -> dict[str, float]:
        eval_set = self.dataset(split, keep_annotations=True)
        batch_size = int(self.config["eval"]["batch_size"] or self.config["data"]["batch_size"])
        loader = build_loader(eval_set, batch_size, int(self.config["data"]["num_workers"]), shuffle=False,
                              rank=distributed.get_rank(), world_size=distributed.get_world_size())
        metric = self._build_metric(eval_set.dataset)
        with tqdm(total=len(loader), desc=f"eval {split}", dynamic_ncols=True, leave=False,
                  disable=not distributed.is_main_process()) as progress:
            metrics = run_evaluation(self.inference_model, loader, metric, self.device, progress)
        return self._record_metrics(split, metrics)

    def _record_metrics(self, split: str, metrics: dict[str, float]) -> dict[str, float]:
        self.metrics = {k: float(v) for k, v in metrics.items()}
        if distributed.is_main_process():
            write_metrics(self.work_dir, self.metrics)
            self.log.write({"mode": "val", "split": split, "epoch": self.epoch, "iter": self.iteration, **self.metrics})
            shown = ", ".join(f"{k} {v:.4f}" for k, v in list(self.metrics.items())[:6])
            print(f"eval {split} (epoch {self.epoch}, iter {self.iteration}): {shown}")
        self.registry.call_hook("detsdk_after_eval", engine=self, metrics=self.metrics)
        return self.metrics

    def evaluate_results(self, results_file: str | Path) -> dict[str, float]:
        """Score saved COCO-format detections against the test (else val) split, without a model or images."""
        split = self._eval_split(("test", "val"))
        if split is None:
            raise RecipeError(f"{self.recipe.source_of('data')}: no data.test or data.val table to evaluate on")
        dataset = build.build_dataset(self.config["data"][split], f"data.{split}")
        results = _read_results(Path(results_file))
        metric = self._build_metric(dataset)
        metric.add_coco_results(results)
        return self._record_metrics(split, metric.compute())

    # -- prediction -------------------------------------------------------
    def detector(self) -> Detector:
        """The trained model with the recipe's inference pipeline, as apps use it."""
        if self.model is None:
            raise RecipeError("no model yet: call fit() or evaluate() first, or use detsdk.load_detector(checkpoint)")
        transforms = [
            build_component("transform", step, where=f"pipeline[{i}]")
            for i, step in enumerate(inference_pipeline_spec(self.config))
        ]
        return Detector(self.inference_model, transforms, self.classes, self.device, self.cat_ids,
                        tta=tta_settings(self.config["eval"]["tta"]))

    def predict(self, images, score_thr: float = 0.0):
        """Detect on an image array or path, or a list of them (see ``Detector.predict``)."""
        detector = self.detector()
        try:
            return detector.predict(images, score_thr=score_thr)
        finally:
            self.model.train()

    def _plot(self, split: str) -> None:
        if not distributed.is_main_process():
            return
        plots = self.work_dir / "plots"
        plot_curves(self.log.read(), plots)
        count = int(self.config["runtime"]["plot_samples"])
        if count <= 0 or self.model is None:
            return
        dataset = self.dataset(split).dataset
        images = [dataset[i]["image"] for i in range(min(count, len(dataset)))]
        if not images:
            return
        results = self.predict(images)
        drawn = [
            draw_detections(image, r.boxes, r.labels, r.scores, self.classes, r.masks)
            for image, r in zip(images, results)
        ]
        save_grid(drawn, plots / "predictions.png")


class _StepLog:
    """Averages the losses of every ``every`` iterations into one ``log.jsonl`` record."""

    def __init__(self, run_log: RunLog, every: int):
        self.run_log, self.every = run_log, every
        self.pending: list[LossReadout] = []
        self.started = time.perf_counter()

    def add(self, losses: LossReadout, epoch: int, iteration: int, lr: float, force: bool = False) -> dict | None:
        """Record one iteration; every ``every`` iterations (or when forced) read the window's losses
        (one device sync), write their means and return them."""
        self.pending.append(losses)
        if iteration % self.every and not force:
            return None
        read_losses(self.pending)  # raises on the first non-finite iteration
        window: dict[str, list[float]] = defaultdict(list)
        for readout in self.pending:
            for name, value in readout.items():
                window[name].append(value)
        means = {k: float(np.mean(v)) for k, v in window.items()}
        self.run_log.write(
            {"mode": "train", "epoch": epoch, "iter": iteration, "lr": lr, **means,
             "time": (time.perf_counter() - self.started) / len(self.pending)}
        )
        self.pending.clear()
        self.started = time.perf_counter()
        return means

    def check(self) -> None:
        """Read the losses not logged yet and stop on a non-finite one (before a checkpoint or an evaluation)."""
        read_losses(self.pending)


def _read_results(path: Path) -> list[dict]:
    """A COCO results JSON: a list of detections, each with image_id, category_id, score and bbox or segmentation."""
    if not path.is_file():
        raise DataError(f"results file not found: {path}")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(results, list):
        raise DataError(f"{path}: expected a JSON list of COCO detections, got {type(results).__name__}")
    for index, entry in enumerate(results):
        if not isinstance(entry, dict) or not {"image_id", "category_id", "score"} <= entry.keys() or not (
            "bbox" in entry or "segmentation" in entry
        ):
            raise DataError(
                f"{path}: item {index}: expected image_id, category_id, score and bbox or segmentation"
            )
    return results
