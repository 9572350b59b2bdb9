"""The module that is exported: uint8 images in, normalised and padded inside, post-processed detections out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detsdk.export.pipeline import InferencePipeline

BOX_OUTPUTS = ("boxes", "scores", "labels", "batch_index")
MASK_OUTPUT = "masks"


def detections_for_export(detector: nn.Module, images: torch.Tensor, image_sizes: list) -> list[dict]:
    """The detector's eval detections, through its own ``export_detections`` when it has one.

    The export contract: ``export_detections(images, image_sizes)`` (or, the generic path,
    ``detector(images, image_sizes=image_sizes)`` in eval mode) returns per image ``boxes``
    (x1 y1 x2 y2 in the input's pixels), ``scores``, 0-based ``labels`` and optionally
    ``masks`` (probabilities pasted into the image size), using ``image_sizes`` as given:
    under tracing they are traced values, which keeps the graph's height and width dynamic.
    """
    export_detections = getattr(detector, "export_detections", None)
    if export_detections is not None:
        return export_detections(images, image_sizes)
    return detector(images, image_sizes=image_sizes)


class ExportGraph(nn.Module):
    """A detector behind its inference pipeline, as one graph.

    ``forward(images)``: uint8 RGB ``N x 3 x H x W`` (any ``H`` and ``W``) ->
    ``boxes`` ``K x 4`` float (x1 y1 x2 y2 in the input's pixels), ``scores`` ``K``,
    ``labels`` ``K`` int64 (0-based), ``batch_index`` ``K`` int64 (which image) and, with
    ``with_masks``, ``masks`` ``K x H x W`` float probabilities. Inside: ``(x - mean) / std``,
    padding to a multiple of ``size_divisor`` with ``pad_value``, the detector and its
    post-processing (score threshold, per-class NMS, top-k).
    """

    def __init__(self, detector: nn.Module, pipeline: InferencePipeline, with_masks: bool = False):
        super().__init__()
        self.detector = detector.eval()
        self.pipeline = pipeline
        self.with_masks = with_masks
        if pipeline.mean is not None:
            self.register_buffer("mean", torch.tensor(pipeline.mean).reshape(1, 3, 1, 1), persistent=False)
            self.register_buffer("inverse_std", 1 / torch.tensor(pipeline.std).reshape(1, 3, 1, 1), persistent=False)
        self.eval()  # the exporter restores this mode afterwards, on the detector too

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise the uint8 batch and pad it at the bottom and right, as the recipe's pipeline does."""
        x = images.float()
        if self.pipeline.mean is not None:
            x = (x - self.mean) * self.inverse_std
        divisor = self.pipeline.size_divisor
        if divisor > 1:
            height, width = images.shape[-2], images.shape[-1]
            x = F.pad(x, (0, (divisor - width % divisor) % divisor, 0, (divisor - height % divisor) % divisor),
                      value=self.pipeline.pad_value)
        return x

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Detections of every image of the batch, concatenated (``batch_index`` says whose)."""
        image_sizes = [images.shape[-2:]] * images.shape[0]
        detections = detections_for_export(self.detector, self.preprocess(images), image_sizes)
        outputs = [
            torch.cat([d["boxes"] for d in detections]),
            torch.cat([d["scores"] for d in detections]),
            torch.cat([d["labels"].to(torch.int64) for d in detections]),
            torch.cat([torch.full_like(d["labels"], i, dtype=torch.int64) for i, d in enumerate(detections)]),
        ]
        if self.with_masks:
            masks = torch.cat([d["masks"] for d in detections])
            outputs.append(masks[:, 0] if masks.dim() == 4 else masks)
        return tuple(outputs)
