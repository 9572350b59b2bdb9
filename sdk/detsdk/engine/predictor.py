"""Trained detectors for apps: ``load_detector(checkpoint).predict(image)``."""

from __future__ import annotations

import tomllib
from pathlib import Path

import attrs
import numpy as np
import torch
from torch import nn

from detsdk.data.loader import apply_pipeline, collate
from detsdk.detections import PredictsImages
from detsdk.engine.conv_bn_fusion import fuse_conv_bn
from detsdk.engine.evaluation import to_original_coordinates
from detsdk.recipe.slice_options import SliceSettings, slice_settings
from detsdk.engine.tta import TTASettings, detect_with_tta, tta_settings
from detsdk.errors import CheckpointError


class Detector(PredictsImages):
    """A detector with its inference pipeline and class names, ready to predict on images.

    >>> detector = load_detector("runs/quickstart/best.pt")   # doctest: +SKIP
    >>> result = detector.predict(image)                      # H×W×3 uint8 RGB or a path
    >>> result.boxes, result.scores, result.class_names
    """

    def __init__(self, model: nn.Module, transforms: list, classes: list[str], device: torch.device,
                 cat_ids: list[int] | None = None, tta: TTASettings | None = None,
                 slicing: SliceSettings | None = None):
        self.model = model.to(device).eval()
        self.transforms = transforms
        self.tta = tta
        self.slicing = slicing  # [eval] slice: the default of predict(slice=...)
        self.classes = list(classes)
        self.device = device
        self.cat_ids = cat_ids

    @torch.no_grad()
    def detect(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Raw detections (numpy ``boxes``, ``scores``, ``labels``, ``masks``) in each RGB image's pixels."""
        samples = [{"image": image, "meta": {}} for image in images]
        if self.tta is not None:
            return detect_with_tta(self.model, samples, self.transforms, self.tta, self.device)
        tensors, targets, metas = collate([apply_pipeline(sample, self.transforms) for sample in samples])
        outputs = self.model(tensors.to(self.device), image_sizes=[t["image_size"] for t in targets])
        return [to_original_coordinates(output, meta) for output, meta in zip(outputs, metas)]


def inference_pipeline_spec(recipe: dict) -> list[dict]:
    """The test (else val) pipeline of a recipe, used to prepare images for prediction."""
    data = recipe.get("data", {})
    for split in ("test", "val"):
        if isinstance(data.get(split), dict) and "pipeline" in data[split]:
            return data[split]["pipeline"]
    return [{"type": "normalize"}, {"type": "pad", "size_divisor": 32}]


@attrs.frozen
class TrainedModel:
    """A detector rebuilt from a checkpoint: the model (weights loaded, eval mode) and what came with it."""

    model: nn.Module
    recipe: dict
    classes: list[str]
    cat_ids: list[int] | None
    version: str | None


def load_trained_model(checkpoint: str | Path) -> TrainedModel:
    """Rebuild the model saved in a det-sdk checkpoint from its recipe, with its weights and class names.

    Loading never runs code: the checkpoint is read with ``weights_only=True``
    and its recipe is TOML. A model that cannot be rebuilt or whose weights do
    not fit is one ``DetSDKError`` line, naming the det-sdk version that wrote
    the checkpoint when it is not this one.
    """
    from detsdk import __version__
    from detsdk.engine.build import build_model
    from detsdk.engine.checkpoint import load_checkpoint
    from detsdk.errors import DetSDKError

    state = load_checkpoint(checkpoint)
    missing = [k for k in ("model", "recipe", "classes") if k not in state]
    if missing:
        raise CheckpointError(f"{checkpoint}: not a det-sdk checkpoint (no {', '.join(missing)})")
    version = state.get("version")
    written_by = "" if version == __version__ else f" (written by det-sdk {version or 'unknown'}, this is {__version__})"
    recipe = tomllib.loads(state["recipe"])
    classes = list(state["classes"])
    try:
        model = build_model(recipe["model"], len(classes), for_inference=True)
    except DetSDKError as exc:
        raise type(exc)(f"{checkpoint}: {exc}{written_by}") from None
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{checkpoint}: weights do not fit the recipe's model ({str(exc).splitlines()[0]}){written_by}"
        ) from None
    return TrainedModel(model.eval(), recipe, classes, state.get("cat_ids"), version)


def load_detector(checkpoint: str | Path, device: str | None = None) -> Detector:
    """Rebuild the detector saved in a det-sdk checkpoint (its recipe, weights and class names).

    Loading never runs code: the checkpoint is read with ``weights_only=True``
    and its recipe is TOML.
    """
    from detsdk.engine.device import resolve_device
    from detsdk.plugins.build import build_component

    trained = load_trained_model(checkpoint)
    transforms = [
        build_component("transform", step, where=f"pipeline[{i}]")
        for i, step in enumerate(inference_pipeline_spec(trained.recipe))
    ]
    tta = tta_settings(trained.recipe.get("eval", {}).get("tta"))
    slicing = slice_settings(trained.recipe.get("eval", {}).get("slice"))
    device = resolve_device(device or "auto")
    return Detector(fused_for_inference(trained.model, device), transforms, trained.classes, device, trained.cat_ids,
                    tta=tta, slicing=slicing)


def fused_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in eval mode on ``device``, each BatchNorm folded into the convolution that feeds it (in
    place; see ``detsdk.engine.conv_bn_fusion``): what ``load_detector`` and ``Engine.detector`` predict with."""
    model = model.to(device).eval()

    def run_example(detector: nn.Module) -> None:
        # 256 px: the coarsest (stride 128) level is 2x2, as GroupNorm needs more than one value per group
        detector(torch.zeros((1, 3, 256, 256), device=device), image_sizes=[(256, 256)])

    fuse_conv_bn(model, run_example)
    return model
