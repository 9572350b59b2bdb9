"""The inference pipeline an exported graph expects: resize in NumPy/OpenCV, normalise and pad in the graph.

Only what can be replayed outside PyTorch is allowed: ``resize`` (one scale), ``normalize``
and ``pad`` (to a ``size_divisor``, after ``normalize``). The graph pads itself because
det-sdk pads the *normalised* image with ``pad_value`` (0: the mean colour); a uint8 pad
before the graph's normalisation could not give the same pixels. Free of torch.
"""

from __future__ import annotations

import attrs
import cv2
import numpy as np

from detsdk.builtin.transforms.geometric import Resize
from detsdk.builtin.transforms.photometric import Normalize
from detsdk.errors import ExportError
from detsdk.export.mask_paste import paste_box_masks

SUPPORTED = ("resize", "normalize", "pad")


@attrs.frozen
class InferencePipeline:
    """Resize (``scale`` ``[long, short]`` or ``None``, ``keep_ratio``), normalise (``mean``/``std`` or ``None``), pad."""

    scale: tuple[float, float] | None = None
    keep_ratio: bool = True
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    size_divisor: int = 1
    pad_value: float = 0.0

    @classmethod
    def from_spec(cls, spec: list[dict], where: str = "pipeline") -> InferencePipeline:
        """Read a recipe's test pipeline; a step with no counterpart outside PyTorch is an ``ExportError``."""
        values: dict = {}
        seen: list[str] = []
        for i, step in enumerate(spec):
            kind = str(step.get("type", "")).rpartition("/")[2]
            params = {k: v for k, v in step.items() if k != "type"}
            if kind == "random_flip" and float(params.get("p", 0.5)) == 0:
                continue  # never flips
            if kind not in SUPPORTED or kind in seen:
                raise ExportError(
                    f"{where}[{i}]: transform '{step.get('type')}' cannot be exported: an exported detector's "
                    f"pipeline is at most one each of {', '.join(SUPPORTED)} (see docs/export.md)"
                )
            if kind == "resize":
                resize = Resize(**params)
                if len(resize.scales) != 1 or seen:
                    raise ExportError(f"{where}[{i}]: resize must come first and have one scale to be exported")
                values.update(scale=resize.scales[0], keep_ratio=resize.keep_ratio)
            elif kind == "normalize":
                if "pad" in seen:
                    raise ExportError(f"{where}[{i}]: normalize after pad cannot be exported; pad after it")
                normalize = Normalize(**params)
                values.update(mean=tuple(normalize.mean), std=tuple(normalize.std))
            else:
                if params.get("size") is not None:
                    raise ExportError(f"{where}[{i}]: pad to a fixed size cannot be exported; use size_divisor")
                values.update(size_divisor=max(int(params.get("size_divisor", 32)), 1),
                              pad_value=float(params.get("pad_value", 0.0)))
            seen.append(kind)
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-ready values, as stored in an exported model's metadata."""
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> InferencePipeline:
        """The inverse of ``to_dict``."""
        values = dict(values)
        for key in ("scale", "mean", "std"):
            if values.get(key) is not None:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)

    def resize(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """The image resized as the recipe's ``resize`` does, and its ``(w_scale, h_scale)``."""
        if self.scale is None:
            return image, (1.0, 1.0)
        resized = Resize(scale=list(self.scale), keep_ratio=self.keep_ratio)({"image": image, "meta": {}})
        return resized["image"], resized["meta"]["scale_factor"]


def to_original(detection: dict[str, np.ndarray], scale_factor: tuple[float, float],
                original_shape: tuple[int, int], input_shape: tuple[int, int] | None = None,
                mask_paste: str | None = None) -> dict[str, np.ndarray]:
    """One image's graph outputs mapped from the resized image's pixels back to the original image's.

    Boxes are divided by the scale factor and clipped. Masks: with ``mask_paste`` (the graph
    gave ``K x M x M`` box-relative probabilities) they are pasted at the boxes in the network
    input of ``input_shape`` and resized to the original image (``detsdk.export.mask_paste``);
    without, the ``K x H x W`` probabilities are resized bilinearly (half-pixel centres, as
    ``F.interpolate(align_corners=False)``). Either way they are cut at 0.5.
    """
    height, width = original_shape
    scale_w, scale_h = scale_factor
    boxes = detection["boxes"].astype(np.float64) / np.array([scale_w, scale_h, scale_w, scale_h])
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    result = {"boxes": boxes, "scores": detection["scores"].astype(np.float32),
              "labels": detection["labels"].astype(np.int64)}
    if "masks" in detection and mask_paste is not None:
        if input_shape is None:
            raise ValueError("to_original: box-relative masks need the network input's shape")
        result["masks"] = paste_box_masks(detection["masks"], detection["boxes"], input_shape, original_shape, mask_paste)
    elif "masks" in detection:
        masks = detection["masks"].astype(np.float32)
        resized = [cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in masks]
        stacked = np.stack(resized) if resized else np.zeros((0, height, width), np.float32)
        result["masks"] = (stacked >= 0.5).astype(np.uint8)
    return result
