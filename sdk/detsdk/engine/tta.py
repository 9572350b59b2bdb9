"""Test-time augmentation: detect at several scales and flipped, then merge by class-wise NMS.

Set in the recipe's ``[eval]`` table (off by default)::

    [eval]
    tta = { scales = [[1333, 800], [1666, 1000]], flip = true, iou_threshold = 0.5 }

Each variant re-runs the inference pipeline with its ``resize`` scale replaced
(a ``resize`` is put first when the pipeline has none) and, for flipped
variants, a horizontal flip put first. The detections of every variant are
mapped back to the original image through the ``meta`` the pipeline records
(``to_original_coordinates``), pooled, and merged with
``torchvision.ops.batched_nms`` per class, as MMDetection 3's ``DetTTAModel``
does. Masks (Mask R-CNN) follow their box: the kept detection's mask, mapped
back to the original image, is kept; masks are not averaged across variants.

``sdk eval`` (``Engine.evaluate``) and prediction (``Detector``, ``sdk
predict``, ``Engine.predict``) use it; evaluations during ``fit`` do not,
as MMDetection validates without TTA while training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.ops import batched_nms

from detsdk.data.loader import PipelineDataset, apply_pipeline, collate
from detsdk.data.transform_roles import RANDOM_FLIP, RESIZE, role_of
from detsdk.engine.evaluation import to_original_coordinates
from detsdk.recipe.tta_options import TTASettings, tta_settings  # noqa: F401 (the engine's TTA names)

def variant_pipelines(transforms: Sequence[Callable], settings: TTASettings) -> list[list[Callable]]:
    """One pipeline per variant: each scale (``resize`` replaced), then the same flipped.

    A random flip of the original pipeline is left out, so each variant is
    either flipped or not, never by chance. Transforms are recognised by their
    declared role (``detsdk.data.transform_roles``): a plugin's resize is rescaled
    with its ``with_scale``.
    """
    from detsdk.builtin.transforms.geometric import RandomFlip, Resize

    base = [t for t in transforms if role_of(t) != RANDOM_FLIP]
    pipelines = []
    for scale in settings.scales or [None]:
        scaled = base
        if scale is not None:
            if any(role_of(t) == RESIZE for t in base):
                scaled = [t.with_scale(list(scale)) if role_of(t) == RESIZE else t for t in base]
            else:
                scaled = [Resize(scale=list(scale)), *base]
        pipelines.append(scaled)
        if settings.flip:
            # First, on the original image: the meta it records is undone after the resize's.
            pipelines.append([RandomFlip(p=1.0, direction=settings.flip_direction), *scaled])
    return pipelines


def merge_detections(
    found: list[dict[str, np.ndarray]], iou_threshold: float, max_per_image: int
) -> dict[str, np.ndarray]:
    """Pool one image's detections from every variant (original pixels) and keep the NMS winners, best first."""
    merged = {key: np.concatenate([d[key] for d in found]) for key in ("boxes", "scores", "labels")}
    if all("masks" in d for d in found):
        merged["masks"] = np.concatenate([d["masks"] for d in found])
    keep = batched_nms(
        torch.as_tensor(merged["boxes"], dtype=torch.float32),
        torch.as_tensor(merged["scores"], dtype=torch.float32),
        torch.as_tensor(merged["labels"], dtype=torch.int64),
        iou_threshold,
    )[:max_per_image].numpy()
    return {key: value[keep] for key, value in merged.items()}


@torch.no_grad()
def detect_variants(
    model: nn.Module, variants: list[list[dict]], device: torch.device, settings: TTASettings
) -> list[dict[str, np.ndarray]]:
    """Run ``model`` (in eval mode) on each variant batch and merge per image.

    ``variants[v][i]`` is image ``i`` after variant ``v``'s pipeline.
    """
    per_image: list[list[dict]] = [[] for _ in variants[0]]
    for samples in variants:
        images, targets, metas = collate(samples)
        outputs = model(images.to(device), image_sizes=[t["image_size"] for t in targets])
        for found, output, meta in zip(per_image, outputs, metas):
            found.append(to_original_coordinates(output, meta))
    return [merge_detections(found, settings.iou_threshold, settings.max_per_image) for found in per_image]


def detect_with_tta(
    model: nn.Module, samples: list[dict], transforms: Sequence[Callable], settings: TTASettings, device: torch.device
) -> list[dict[str, np.ndarray]]:
    """Detections in original pixels for samples before the pipeline (``image`` and ``meta``)."""
    pipelines = variant_pipelines(transforms, settings)
    variants = [[apply_pipeline(sample, pipeline) for sample in samples] for pipeline in pipelines]
    return detect_variants(model, variants, device, settings)


class TTADataset(Dataset):
    """Each item is ``(variant samples, annotations)``: the sample through every variant's pipeline."""

    def __init__(self, eval_set: PipelineDataset, settings: TTASettings):
        self.raw = PipelineDataset(eval_set.dataset, [], keep_annotations=True)
        self.pipelines = variant_pipelines(eval_set.transforms, settings)

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, index: int):
        sample, annotations = self.raw[index]
        return [apply_pipeline(sample, pipeline) for pipeline in self.pipelines], annotations


def collate_variants(items: list[tuple[list[dict], dict]]) -> tuple[list[list[dict]], list[dict]]:
    """Regroup a batch by variant: ``(variants[v][i], annotations[i])``."""
    variants = [list(group) for group in zip(*(samples for samples, _ in items))]
    return variants, [annotations for _, annotations in items]


def evaluate_with_tta(
    model: nn.Module,
    eval_set: PipelineDataset,
    metric,
    device: torch.device,
    settings: TTASettings,
    batch_size: int,
    num_workers: int,
) -> dict[str, float]:
    """Like ``run_evaluation``, with every image detected through each TTA variant and merged."""
    loader = DataLoader(
        TTADataset(eval_set, settings), batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=collate_variants,
    )
    was_training = model.training
    model.eval()
    try:
        for variants, annotations in loader:
            metric.process(annotations, detect_variants(model, variants, device, settings))
    finally:
        model.train(was_training)
    return metric.compute()
