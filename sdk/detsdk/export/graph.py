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
    ``masks`` (probabilities pasted into the image size) or, better, ``box_masks`` (``K x M x M``
    probabilities in each box's frame, which the runtime pastes; the detector's ``mask_paste``
    names how), using ``image_sizes`` as given: under tracing they are traced values, which
    keeps the graph's height and width dynamic.
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
    ``with_masks``, ``masks``: ``K x M x M`` box-relative float probabilities when the detector
    gives ``box_masks`` (``mask_format = "box"``), else ``K x H x W`` pasted ones. Inside: ``(x - mean) / std``,
    padding to a multiple of ``size_divisor`` with ``pad_value``, the detector and its
    post-processing (score threshold, per-class NMS, top-k).
    """

    def __init__(self, detector: nn.Module, pipeline: InferencePipeline, with_masks: bool = False,
                 mask_format: str = "box"):
        super().__init__()
        self.detector = detector.eval()
        self.pipeline = pipeline
        self.with_masks = with_masks
        self.mask_format = mask_format  # "box" (box_masks, pasted by the runtime) or "image"
        if pipeline.mean is not None:
            self.register_buffer("mean", torch.tensor(pipeline.mean).reshape(1, 3, 1, 1), persistent=False)
            self.register_buffer("inverse_std", 1 / torch.tensor(pipeline.std).reshape(1, 3, 1, 1), persistent=False)
        self.eval()  # the exporter restores this mode afterwards, on the detector too

    @classmethod
    def probed(cls, detector: nn.Module, pipeline: InferencePipeline, example: torch.Tensor) -> ExportGraph:
        """The graph for ``detector``, its mask output set from what the detector returns on ``example``
        (a uint8 ``1 x 3 x H x W``): masks are whatever the detector gives, not a list of known detectors."""
        graph = cls(detector, pipeline)
        with torch.no_grad():
            detection = detections_for_export(detector.eval(), graph.preprocess(example), [example.shape[-2:]])[0]
        graph.with_masks, graph.mask_format = mask_output(detection)
        return graph

    @property
    def mask_paste(self) -> str | None:
        """How the runtime pastes this graph's box-relative masks (None: it has none to paste)."""
        if not (self.with_masks and self.mask_format == "box"):
            return None
        return getattr(self.detector, "mask_paste", "torchvision")

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
            masks = torch.cat([d["box_masks" if self.mask_format == "box" else "masks"] for d in detections])
            outputs.append(masks[:, 0] if masks.dim() == 4 else masks)
        return tuple(outputs)


def mask_output(detection: dict) -> tuple[bool, str]:
    """Whether a detector's export detections carry masks, and in which form (``"box"`` or ``"image"``)."""
    if "box_masks" in detection:
        return True, "box"
    return "masks" in detection, "image"
