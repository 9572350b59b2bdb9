"""``Engine``: one recipe, trained, evaluated and used for prediction.

The loop is short on purpose (Detectron2's SimpleTrainer): fetch, forward,
check the loss, backward, step. Logging, checkpoints and evaluation happen
between iterations; plugins observe through the ``detsdk_*`` event hooks, and
hook objects (``train.hooks``, ``Engine.from_recipe(..., hooks=[...])``) may act,
e.g. ``engine.stop_training(reason)``.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from detsdk import __version__
from detsdk.data.device_normalize import defer_normalize
from detsdk.data.encoded import EncodedDataset, check_decodable
from detsdk.data.loader import PipelineDataset, build_loader
from detsdk.engine import build, distributed
from detsdk.engine.checkpoint import (
    load_checkpoint,
    model_state_of,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from detsdk.engine.analysis_hook import AnalysisHook
from detsdk.engine.checkpoint_hook import CheckpointHook
from detsdk.engine.device import resolve_device
from detsdk.threads import apply_thread_policy
from detsdk.engine.evaluation import run_evaluation
from detsdk.engine.evaluation_hook import EvaluationHook
from detsdk.engine.hooks import Hooks
from detsdk.engine.intervals import Interval
from detsdk.engine.interop import to_detsdk
from detsdk.engine.load_from import load_weights_from
from detsdk.engine.log_hooks import JsonLogHook, PluginEvents, PluginTrainEnd, ProgressBarHook
from detsdk.engine.plots_hook import PlotsHook
from detsdk.engine.predictor import Detector, fused_for_inference, inference_pipeline_spec
from detsdk.engine.results_file import read_results, results_iou_types
from detsdk.engine.run_log import RunLog, write_metrics
from detsdk.engine.loss_readout import LossReadout, read_losses
from detsdk.engine.slicing import evaluate_sliced, slice_settings
from detsdk.engine.train_setup import enable_deterministic
from detsdk.engine.train_step import TrainStep, iteration_batches
from detsdk.engine.training_parts import build_training_parts
from detsdk.engine.tta import evaluate_with_tta, tta_settings
from detsdk.errors import CheckpointError, RecipeError
from detsdk.plugins import get_registry
from detsdk.plugins.build import build_component
from detsdk.recipe import Recipe, dump_recipe, load_recipe, validate_recipe, with_defaults
from detsdk.recipe.config import RecipeConfig


class Engine:
    """Train, evaluate and predict with the detector a recipe describes.

    >>> engine = Engine.from_recipe("recipe.toml", overrides=["train.epochs=1"])  # doctest: +SKIP
    >>> metrics = engine.fit()                                                    # doctest: +SKIP
    """

    def __init__(self, recipe: Recipe, work_dir: str | Path | None = None, device: str | None = None,
                 hooks: Sequence[Any] = ()):
        validate_recipe(recipe)
        self.recipe = recipe
        self.config = with_defaults(recipe.data)  # the resolved recipe, as dicts (what work dirs keep)
        self.settings = RecipeConfig.from_tables(self.config)  # its [train], [data], [eval], [runtime], typed
        runtime = self.settings.runtime
        self.work_dir = Path(work_dir or runtime.work_dir or Path("runs") / recipe.stem)
        # Under torchrun this joins the process group; each rank then has its own GPU (or gloo on the CPU).
        self.device = distributed.setup(resolve_device(device or runtime.device), runtime.dist_timeout)
        self.threads = apply_thread_policy(self.settings.data.num_workers)  # before any loader forks
        self.registry = get_registry()
        self.log = RunLog(self.work_dir, enabled=distributed.is_main_process())
        self.model: torch.nn.Module | None = None
        self.train_model: torch.nn.Module | None = None  # set by fit(): the model, or its DDP wrapper
        self.classes: list[str] = []
        self.cat_ids: list[int] | None = None
        self.iteration = 0
        self.epoch = 0
        self.metrics: dict[str, float] = {}
        self.last_metric = None  # the metric of the latest evaluation, computed
        self.best_score = -math.inf
        self.unread_losses: list[LossReadout] = []  # training losses still on the device (read per log interval)
        self.train_step: TrainStep | None = None  # set by fit(): precision, accumulation, clipping, EMA
        self._datasets: dict[tuple[str, bool], Any] = {}
        self.hook_objects = list(hooks)  # the app's, after train.hooks
        self.hooks = Hooks()  # set by fit(): train.hooks, then hook_objects
        self.stop_reason: str | None = None  # set by stop_training()
        self.train_data: PipelineDataset | None = None  # set by fit(): what the training loader reads
        self.device_normalize = None  # set by fit(): normalisation moved to the device, or None
        self.is_training = False  # True inside fit()

    @classmethod
    def from_recipe(
        cls,
        source: str | Path | Mapping,
        overrides: Iterable[str] | Mapping[str, Any] = (),
        work_dir: str | Path | None = None,
        device: str | None = None,
        hooks: Sequence[Any] = (),
    ) -> Engine:
        """Load a recipe file or dict, apply overrides, validate it and make an engine.

        ``overrides`` are ``"key=value"`` strings (as ``--set``) or a dict such as
        ``{"train.epochs": 1}``; ``hooks`` are hook objects run after ``train.hooks``.
        """
        return cls(load_recipe(source, overrides), work_dir=work_dir, device=device, hooks=hooks)

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
        seed = self.settings.runtime.seed + distributed.get_rank()
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if self.settings.runtime.deterministic:
            enable_deterministic()

    # -- training ---------------------------------------------------------
    def fit(self, resume: bool = False) -> dict[str, float]:
        """Train, evaluating every ``eval_interval`` and at the end; returns the last metrics."""
        self._seed()
        self.stop_reason = None
        train_set = self.dataset("train")
        model = self._ensure_model(list(train_set.dataset.classes),
                                   f"data.train ({self.config['data']['train']['type']})", train_set.dataset)
        eval_split = self._eval_split(("val", "test"))
        if eval_split:
            self._check_same_classes(eval_split)
        parts = build_training_parts(self.settings, model, train_set, self.device)
        self.model, self.train_data, self.device_normalize = parts.model, parts.train_data, parts.device_normalize
        self.optimizer, self.scheduler, self.train_step = parts.optimizer, parts.scheduler, parts.train_step
        self.total_iters, self.iters_per_epoch = parts.total_iters, parts.iters_per_epoch
        self.hooks = build.build_hooks(self.settings.train.hooks, self.hook_objects,
                                       builtin=self._builtin_hooks(eval_split, parts.by_iterations))
        if resume:
            self._resume()
        elif self.settings.runtime.load_from:
            load_weights_from(self.model, self.settings.runtime.load_from)
        # What training calls: the model, or its DDP wrapper; evaluation and checkpoints use the model.
        train = self.settings.train
        self.train_model = distributed.wrap_model(self.model, self.device, train.find_unused_parameters,
                                                  comm=train.ddp_comm, bucket_mb=train.ddp_bucket_mb)
        self.train_step.model = self.train_model
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if distributed.is_main_process():
            if not resume:
                self.log.path.unlink(missing_ok=True)  # a fresh run starts a fresh log
            (self.work_dir / "recipe.toml").write_text(dump_recipe(self.config), encoding="utf-8")
        self.is_training = True
        try:
            self.hooks.call("before_train", self)
            self._train_loop(parts.loader, parts.samples_per_iteration)
            self.hooks.call("after_train", self)
        finally:
            self.is_training = False
            self.hooks.close()
        return self.metrics

    def _builtin_hooks(self, eval_split: str | None, by_iterations: bool) -> list:
        """The engine's own work between iterations, in the order it runs for each event."""
        train = self.settings.train

        def interval(value: int) -> Interval:
            return Interval(value if value > 0 else (self.total_iters if by_iterations else 1), by_iterations)

        hooks = [
            JsonLogHook(self.log, train.log_interval), ProgressBarHook(), PluginEvents(self.registry),
            *([build_component("hook", {"type": "tensorboard"})] if self.settings.runtime.tensorboard else []),
            CheckpointHook(interval(train.checkpoint_interval), train.checkpoint_every_iters, train.best_metric,
                           train.max_keep_ckpts, has_evaluation=eval_split is not None),
        ]
        if eval_split:
            hooks.append(EvaluationHook(eval_split, interval(train.eval_interval)))
        hooks.append(PlotsHook(eval_split or "train", self.settings.runtime.plot_samples))
        if eval_split:
            hooks.append(AnalysisHook(self.settings.runtime.plot_samples))
        return [*hooks, PluginTrainEnd(self.registry)]

    def _train_loop(self, loader, samples_per_iteration: int) -> None:
        """Iterate until ``total_iters`` or a hook's ``stop_training``; the hooks do the rest (Detectron2's loop)."""
        self.model.train()
        while self.iteration < self.total_iters and self.stop_reason is None:
            epoch_index, offset = divmod(self.iteration, self.iters_per_epoch)
            loader.sampler.set_epoch(epoch_index, offset * samples_per_iteration)
            loader.dataset.set_epoch(epoch_index)
            self.epoch = epoch_index  # completed epochs
            self.hooks.call("before_epoch", self)
            for batches in iteration_batches(loader, self.train_step.accumulate):
                losses = self._train_step(batches)
                self.unread_losses.append(losses)
                self.iteration += 1
                self.hooks.call("after_iter", self, self.iteration, losses)
                if self.epoch_ending or self.finishing:
                    self.epoch = math.ceil(self.iteration / self.iters_per_epoch)
                    self.hooks.call("after_epoch", self)
                if self.finishing:
                    break

    @property
    def epoch_ending(self) -> bool:
        """This iteration ends an epoch, or the run's last iteration (without a stop)."""
        return self.iteration % self.iters_per_epoch == 0 or self.iteration >= self.total_iters

    @property
    def finishing(self) -> bool:
        """This iteration is the run's last: ``total_iters`` reached, or a hook stopped the run."""
        return self.iteration >= self.total_iters or self.stop_reason is not None

    def stop_training(self, reason: str) -> None:
        """End the run after the current iteration: checkpoint, final evaluation, ``reason`` in ``log.jsonl``.

        A hook calls it (``early_stopping`` does); ``--resume`` afterwards trains nothing more.
        """
        if self.stop_reason is None:
            self.stop_reason = str(reason)

    def add_train_pipeline_stage(self, from_epoch: int, transforms: Sequence) -> None:
        """From 1-based epoch ``from_epoch`` on, training samples go through ``transforms``.

        Call it from a hook's ``before_train`` (``pipeline_switch`` does). When
        normalisation runs on the device, the new pipeline must end with the same
        ``normalize`` [+ ``pad``] as the recipe's; with ``data.decode_on_device``, it
        must also be one the device can run (``detsdk.data.encoded.check_decodable``).
        """
        if self.train_data is None:
            raise RecipeError("add_train_pipeline_stage: call it during fit(), from a hook's before_train")
        transforms = list(transforms)
        if isinstance(self.train_data, EncodedDataset):
            normalize = check_decodable(transforms, f"the training pipeline from epoch {from_epoch}")
            key = "data.decode_on_device"
        elif self.device_normalize is not None:
            transforms, normalize = defer_normalize(transforms)
            key = "data.normalize_on_device"
        if self.device_normalize is not None and (
            normalize is None or not (torch.equal(normalize.mean, self.device_normalize.mean.cpu())
                                      and torch.equal(normalize.inverse_std, self.device_normalize.inverse_std.cpu()))
        ):
            raise RecipeError(
                f"the training pipeline from epoch {from_epoch} must end with the same normalize [+ pad] as "
                f"data.train.pipeline while {key} is on; make them agree or set it to false"
            )
        self.train_data.add_stage(from_epoch - 1, transforms)

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
            "stop_reason": self.stop_reason,
            "hooks": self.hooks.state_dict(),
        }
        if getattr(self, "optimizer", None) is not None:
            state["optimizer"] = self.optimizer.state_dict()
            state["scheduler"] = self.scheduler.state_dict()
        if self.train_step is not None:  # scaler, EMA (and the averaged weights as "model")
            state.update(self.train_step.checkpoint_entries(state["model"]))
        return state

    def read_losses(self) -> None:
        """Read the losses of the iterations since the last read (one device transfer); a NaN or
        infinite one stops the run, naming its iteration and term (``detsdk.engine.loss_readout``)."""
        read_losses(self.unread_losses)
        self.unread_losses.clear()

    def save(self, name: str) -> Path:
        """Write a checkpoint into the work dir atomically (after checking the losses not read yet)."""
        self.read_losses()  # a NaN since the last read stops the run before its weights are saved
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
        self.hooks.load_state_dict(state.get("hooks") or {})
        self.stop_reason = state.get("stop_reason")
        if self.stop_reason is not None:
            print(f"{path}: training was stopped at iteration {self.iteration} ({self.stop_reason}); nothing to resume")
        self.log.drop_after(self.iteration)  # the steps after the checkpoint are trained again
        print(f"resumed from {path} at iteration {self.iteration} (epoch {self.epoch})")

    # -- evaluation -------------------------------------------------------
    def evaluate(self, checkpoint: str | Path | None = None, split: str | None = None) -> dict[str, float]:
        """Evaluate on ``split`` (default: test, else val), with a checkpoint's weights, else the model's.

        Without a model yet (no ``fit()``), the recipe's model is built with
        ``runtime.load_from``'s weights when it names a file.
        """
        split = split or self._eval_split(("test", "val"))
        if split is None:
            raise RecipeError(f"{self.recipe.source_of('data')}: no data.test or data.val table to evaluate on")
        self._model_with_weights(split, checkpoint, keep_annotations=True)
        slicing = slice_settings(self.settings.eval.slice)
        if slicing is not None:  # [eval] slice: here and in predict(), as TTA
            raw = self.dataset(split, keep_annotations=True).dataset
            metrics = evaluate_sliced(self.detector().detect, raw, self._build_metric(raw), slicing)
            return self._record_metrics(split, metrics)
        tta = tta_settings(self.settings.eval.tta)
        if tta is not None:  # [eval] tta: here and in predict(), not in the evaluations during fit()
            eval_set = self.dataset(split, keep_annotations=True)
            batch_size = self.settings.eval.batch_size or self.settings.data.batch_size
            metrics = evaluate_with_tta(self.inference_model, eval_set, self._build_metric(eval_set.dataset), self.device,
                                        tta, batch_size, self.settings.data.num_workers)
            return self._record_metrics(split, metrics)
        return self.evaluate_split(split)

    def _model_with_weights(self, split: str, checkpoint: str | Path | None, keep_annotations: bool = False) -> torch.nn.Module:
        """The model (built from ``split``'s classes if there is none yet), with ``checkpoint``'s weights if given,
        else ``runtime.load_from``'s when it was just built (as Detectron2's ``DefaultPredictor``)."""
        dataset = self.dataset(split, keep_annotations=keep_annotations).dataset
        built = self.model is None
        model = self._ensure_model(list(dataset.classes), f"data.{split} ({self.config['data'][split]['type']})", dataset)
        if checkpoint is not None:
            _load_all_weights(model, checkpoint)
        elif built and self.settings.runtime.load_from:
            load_weights_from(model, self.settings.runtime.load_from)
        return model

    def _build_metric(self, dataset):
        metric = build_component("metric", self.settings.eval.metric, where="eval.metric")
        if hasattr(metric, "bind_dataset"):
            metric.bind_dataset(dataset)
        self.last_metric = metric  # what analyze_evaluation looks at after the evaluation
        return metric

    def evaluate_split(self, split: str) -> dict[str, float]:
        """Evaluate the model as it is on ``split`` (what training's evaluations call); returns the metrics."""
        self.read_losses()
        eval_set = self.dataset(split, keep_annotations=True)
        batch_size = self.settings.eval.batch_size or self.settings.data.batch_size
        loader = build_loader(eval_set, batch_size, self.settings.data.num_workers, shuffle=False,
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
        self.hooks.call("after_eval", self, self.metrics)
        return self.metrics

    def evaluate_results(self, results_file: str | Path) -> dict[str, float]:
        """Score saved COCO-format detections against the test (else val) split, without a model or images."""
        split = self._eval_split(("test", "val"))
        if split is None:
            raise RecipeError(f"{self.recipe.source_of('data')}: no data.test or data.val table to evaluate on")
        dataset = build.build_dataset(self.config["data"][split], f"data.{split}")
        results = read_results(Path(results_file))
        metric = self._build_metric(dataset)
        if hasattr(metric, "iou_types"):  # evaluate what the file holds: boxes, and masks when it has them
            metric.iou_types = results_iou_types(results, Path(results_file))
            print(f"{results_file}: {len(results)} results; evaluating {' and '.join(metric.iou_types)}")
        metric.add_coco_results(results)
        return self._record_metrics(split, metric.compute())

    # -- prediction -------------------------------------------------------
    def detector(self, checkpoint: str | Path | None = None) -> Detector:
        """The model with the recipe's inference pipeline, as apps use it.

        The model is the trained (or evaluated) one; without one, the recipe's model
        with ``checkpoint``'s weights, else ``runtime.load_from``'s. A ``checkpoint``
        replaces the weights of an existing model too.
        """
        if self.model is None or checkpoint is not None:
            split = self._eval_split(("test", "val", "train"))
            if self.model is None and (split is None or not (checkpoint or self.settings.runtime.load_from)):
                raise RecipeError(
                    "no model yet: call fit() or evaluate() first, set runtime.load_from (and a data table to take "
                    "the classes from), pass checkpoint=, or use detsdk.load_detector(checkpoint)"
                )
            if split is None:
                raise RecipeError(f"{self.recipe.source_of('data')}: no data table to take the classes from")
            self._model_with_weights(split, checkpoint)
        transforms = [
            build_component("transform", step, where=f"pipeline[{i}]")
            for i, step in enumerate(inference_pipeline_spec(self.config))
        ]
        # A copy: folding BatchNorms into convolutions must not touch the model training goes on with.
        model = fused_for_inference(copy.deepcopy(self.inference_model), self.device)
        return Detector(model, transforms, self.classes, self.device, self.cat_ids,
                        tta=tta_settings(self.settings.eval.tta),
                        slicing=slice_settings(self.settings.eval.slice))

    def predict(self, images, score_thr: float = 0.0, checkpoint: str | Path | None = None):
        """Detect on an image array or path, or a list of them (see ``Detector.predict``).

        Before any ``fit()``, the recipe's model is built with ``checkpoint``'s or
        ``runtime.load_from``'s weights (det-sdk, torchvision or MMDetection files).
        """
        return self.detector(checkpoint).predict(images, score_thr=score_thr)


def _load_all_weights(model: torch.nn.Module, checkpoint: str | Path) -> None:
    """Load a det-sdk, torchvision or MMDetection checkpoint: names are converted, then all must fit."""
    conversion = to_detsdk(model_state_of(load_checkpoint(checkpoint)))
    if conversion.unplaced:
        raise CheckpointError(
            f"{checkpoint}: {len(conversion.unplaced)} {conversion.source_format} weights have no det-sdk "
            f"counterpart: {', '.join(conversion.unplaced[:5])}"
        )
    try:
        model.load_state_dict(conversion.weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: weights do not fit the recipe's model ({str(exc).splitlines()[0]})") from None

