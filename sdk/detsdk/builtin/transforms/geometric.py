"""Geometric transforms: resize, flip and pad, keeping boxes and masks aligned with the image.

Each transform is a callable ``sample -> sample`` that returns a new dict
(the input is not modified) and records what it did in ``sample["meta"]``.
Samples without ``boxes``/``labels``/``masks`` (a bare image to predict on)
pass through the same code. Randomness comes from ``np.random``, so the
engine's seeding makes it reproducible.

    >>> pipeline = [Resize(scale=[1333, 800]), RandomFlip(p=0.5), Pad(size_divisor=32)]  # doctest: +SKIP
"""

from __future__ import annotations

from numbers import Real

import cv2
import numpy as np

from detsdk.errors import DataError, RecipeError


def _start(sample: dict) -> tuple[dict, dict]:
    """A shallow copy of the sample with its own ``meta`` dict, so callers' dicts stay untouched."""
    sample = dict(sample)
    meta = dict(sample.get("meta") or {})
    sample["meta"] = meta
    return sample, meta


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_pair(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) and v > 0 for v in value)


class Resize:
    """Resize the image to a scale, or to a scale drawn at random (multi-scale training).

    Args:
        scale: one ``[long_edge, short_edge]`` pair, or a list of pairs. With
            ``multiscale_mode = "range"`` two pairs bound a range that both edges
            are drawn from uniformly (MMDetection's ``multiscale_mode='range'``);
            with ``"value"`` one of the pairs is picked at random.
        keep_ratio: True fits the image inside ``long_edge × short_edge`` keeping
            its aspect ratio; False resizes to exactly ``width = scale[0]``,
            ``height = scale[1]``.
        multiscale_mode: ``"range"`` or ``"value"``, used when ``scale`` lists several pairs.

    Boxes are scaled and clipped to the image, masks resized nearest-neighbour.
    Records ``meta["img_shape"]`` ``(h, w)`` and ``meta["scale_factor"]``
    ``(w_scale, h_scale)`` (the actual ratios after rounding, multiplied into
    any earlier resize's, so they always relate to the original image).
    """

    transform_role = "resize"  # detsdk.data.transform_roles: TTA rescales it with with_scale()

    # A list default (never mutated) so that `sdk list` shows it as the recipe would write it.
    def __init__(
        self,
        scale: list = [1333, 800],  # noqa: B006
        keep_ratio: bool = True,
        multiscale_mode: str = "range",
    ):
        if _is_pair(scale):
            scales = [tuple(float(v) for v in scale)]
        elif isinstance(scale, (list, tuple)) and scale and all(_is_pair(s) for s in scale):
            scales = [tuple(float(v) for v in s) for s in scale]
        else:
            raise RecipeError(
                f"resize: scale = {scale!r}: expected a [long_edge, short_edge] pair of positive numbers "
                "or a list of such pairs"
            )
        if multiscale_mode not in ("range", "value"):
            raise RecipeError(f"resize: multiscale_mode = {multiscale_mode!r}: expected 'range' or 'value'")
        if multiscale_mode == "range" and len(scales) > 2:
            raise RecipeError(
                f"resize: scale has {len(scales)} pairs: multiscale_mode 'range' expects two pairs "
                "(the range's bounds); use multiscale_mode = 'value' to pick one of several"
            )
        if not isinstance(keep_ratio, bool):
            raise RecipeError(f"resize: keep_ratio = {keep_ratio!r}: expected true or false")
        self.scales = scales
        self.keep_ratio = keep_ratio
        self.multiscale_mode = multiscale_mode

    def sample_scale(self) -> tuple[float, float]:
        """The ``(long_edge, short_edge)`` (or ``(w, h)`` without ``keep_ratio``) for one sample."""
        if len(self.scales) == 1:
            return self.scales[0]
        if self.multiscale_mode == "value":
            return self.scales[np.random.randint(len(self.scales))]
        firsts, seconds = [s[0] for s in self.scales], [s[1] for s in self.scales]
        # Integers like MMDetection's random_sample; both bounds included.
        return (
            float(np.random.randint(int(min(firsts)), int(max(firsts)) + 1)),
            float(np.random.randint(int(min(seconds)), int(max(seconds)) + 1)),
        )

    def target_size(self, height: int, width: int, scale: tuple[float, float]) -> tuple[int, int]:
        """The output ``(height, width)`` for an image of this size at ``scale``."""
        if not self.keep_ratio:
            return max(int(round(scale[1])), 1), max(int(round(scale[0])), 1)
        long_edge, short_edge = max(scale), min(scale)
        factor = min(long_edge / max(height, width), short_edge / min(height, width))
        return max(int(height * factor + 0.5), 1), max(int(width * factor + 0.5), 1)

    def with_scale(self, scale: list) -> Resize:
        """A copy that resizes to the one ``scale`` pair, keeping ``keep_ratio`` (TTA's scales)."""
        return Resize(scale=list(scale), keep_ratio=self.keep_ratio)

    def __call__(self, sample: dict) -> dict:
        """Resize ``image``, ``boxes`` and ``masks``; record ``img_shape`` and ``scale_factor``."""
        sample, meta = _start(sample)
        image = sample["image"]
        height, width = image.shape[:2]
        new_height, new_width = self.target_size(height, width, self.sample_scale())
        if (new_height, new_width) != (height, width):
            sample["image"] = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
            if sample["image"].ndim < image.ndim:  # cv2 drops a single channel axis
                sample["image"] = sample["image"][..., None]
        resize_annotations(sample, meta, (height, width), (new_height, new_width))
        return sample

    def __repr__(self) -> str:
        scale = list(self.scales[0]) if len(self.scales) == 1 else [list(s) for s in self.scales]
        return f"Resize(scale={scale}, keep_ratio={self.keep_ratio}, multiscale_mode={self.multiscale_mode!r})"


def resize_annotations(sample: dict, meta: dict, size: tuple[int, int], new_size: tuple[int, int]) -> None:
    """What ``Resize`` does besides the image, in place: boxes and masks from ``size`` to ``new_size``
    (``(height, width)``), ``meta["scale_factor"]`` and ``meta["img_shape"]`` updated."""
    (height, width), (new_height, new_width) = size, new_size
    w_scale, h_scale = new_width / width, new_height / height
    if "boxes" in sample:
        sample["boxes"] = scale_boxes(sample["boxes"], w_scale, h_scale, new_size)
    if "masks" in sample:
        sample["masks"] = resize_masks(np.asarray(sample["masks"]), new_height, new_width)
    previous = meta.get("scale_factor", (1.0, 1.0))
    meta["scale_factor"] = (float(previous[0]) * w_scale, float(previous[1]) * h_scale)
    meta["img_shape"] = (new_height, new_width)


def scale_boxes(boxes: np.ndarray, w_scale: float, h_scale: float, image_shape: tuple[int, int]) -> np.ndarray:
    """x1y1x2y2 boxes scaled by ``(w_scale, h_scale)`` and clipped to the resized image's ``(height, width)``."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * np.array(
        [w_scale, h_scale, w_scale, h_scale], dtype=np.float32
    )
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, image_shape[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, image_shape[0])
    return boxes


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of N×H×W masks to N×height×width, pixel centres aligned like cv2's bilinear."""
    n, old_height, old_width = masks.shape
    if (old_height, old_width) == (height, width):
        return masks.copy()
    rows = np.minimum(((np.arange(height) + 0.5) * (old_height / height)).astype(np.int64), old_height - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * (old_width / width)).astype(np.int64), old_width - 1)
    return masks[:, rows[:, None], cols[None, :]]


class RandomFlip:
    """Flip the image, boxes and masks with probability ``p``.

    Args:
        p: the probability of flipping, in [0, 1].
        direction: ``"horizontal"`` (left-right) or ``"vertical"`` (up-down).

    Records ``meta["flip"]`` (bool) and ``meta["flip_direction"]`` (the direction, or None).
    """

    transform_role = "random_flip"  # detsdk.data.transform_roles: TTA flips each variant itself

    def __init__(self, p: float = 0.5, direction: str = "horizontal"):
        if not _is_number(p) or not 0 <= p <= 1:
            raise RecipeError(f"random_flip: p = {p!r}: expected a probability between 0 and 1")
        if direction not in ("horizontal", "vertical"):
            raise RecipeError(f"random_flip: direction = {direction!r}: expected 'horizontal' or 'vertical'")
        self.p = float(p)
        self.direction = direction

    def draw(self) -> bool:
        """Whether to flip one sample: one draw from ``np.random`` (``decode_on_device`` draws it the same way)."""
        return bool(np.random.rand() < self.p)

    def __call__(self, sample: dict) -> dict:
        """Flip (or not) and record the decision."""
        sample, meta = _start(sample)
        flip = self.draw()
        meta["flip"] = flip
        meta["flip_direction"] = self.direction if flip else None
        if not flip:
            return sample
        image = sample["image"]
        # Contiguous copies: torch.from_numpy refuses negative strides.
        sample["image"] = np.ascontiguousarray(np.flip(image, axis=1 if self.direction == "horizontal" else 0))
        flip_annotations(sample, image.shape[:2], self.direction)
        return sample

    def __repr__(self) -> str:
        return f"RandomFlip(p={self.p}, direction={self.direction!r})"


def flip_annotations(sample: dict, image_shape: tuple[int, int], direction: str) -> None:
    """What a flip does besides the image, in place: boxes and masks mirrored in ``(height, width)``."""
    if "boxes" in sample:
        sample["boxes"] = flip_boxes(sample["boxes"], image_shape, direction)
    if "masks" in sample:
        axis = 2 if direction == "horizontal" else 1
        sample["masks"] = np.ascontiguousarray(np.flip(np.asarray(sample["masks"]), axis=axis))


def flip_boxes(boxes: np.ndarray, image_shape: tuple[int, int], direction: str) -> np.ndarray:
    """x1y1x2y2 boxes mirrored inside an image of ``(height, width)``."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    flipped = boxes.copy()
    if direction == "horizontal":
        flipped[:, 0], flipped[:, 2] = image_shape[1] - boxes[:, 2], image_shape[1] - boxes[:, 0]
    else:
        flipped[:, 1], flipped[:, 3] = image_shape[0] - boxes[:, 3], image_shape[0] - boxes[:, 1]
    return flipped


class Pad:
    """Pad the image at the bottom and right, to a multiple of ``size_divisor`` or to a fixed size.

    Args:
        size_divisor: pad height and width up to a multiple of this (0 or 1: no rounding).
        size: ``[height, width]`` to pad to exactly (then ``size_divisor`` is not used);
            an image larger than it is an error.
        pad_value: the value of padded image pixels (after ``normalize``, 0 is the mean colour).

    Masks are padded with 0; boxes do not move. Records ``meta["pad_shape"]``
    ``(h, w)``, and ``meta["img_shape"]`` if no resize recorded it.
    """

    transform_role = "pad"  # detsdk.data.transform_roles: has pad_value

    def __init__(self, size_divisor: int = 32, size: list | None = None, pad_value: float = 0.0):
        if isinstance(size_divisor, bool) or not isinstance(size_divisor, int) or size_divisor < 0:
            raise RecipeError(f"pad: size_divisor = {size_divisor!r}: expected an integer >= 0")
        if size is not None and not (
            isinstance(size, (list, tuple))
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise RecipeError(f"pad: size = {size!r}: expected [height, width], two positive integers")
        if not _is_number(pad_value):
            raise RecipeError(f"pad: pad_value = {pad_value!r}: expected a number")
        self.size_divisor = size_divisor
        self.size = tuple(size) if size is not None else None
        self.pad_value = pad_value

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """The padded ``(height, width)`` for an image of this size."""
        if self.size is not None:
            if height > self.size[0] or width > self.size[1]:
                raise DataError(
                    f"pad: image is {height}x{width}, larger than size = {list(self.size)} (height, width); "
                    "resize it first or pad to a larger size"
                )
            return self.size
        divisor = max(self.size_divisor, 1)
        return -(-height // divisor) * divisor, -(-width // divisor) * divisor

    def __call__(self, sample: dict) -> dict:
        """Pad ``image`` (and ``masks``) and record ``pad_shape``."""
        sample, meta = _start(sample)
        image = sample["image"]
        height, width = image.shape[:2]
        new_height, new_width = self.target_size(height, width)
        pad_annotations(sample, meta, (height, width), (new_height, new_width))
        if (new_height, new_width) != (height, width):
            padded = np.full((new_height, new_width) + image.shape[2:], self.pad_value, dtype=image.dtype)
            padded[:height, :width] = image
            sample["image"] = padded
        return sample

    def __repr__(self) -> str:
        size = list(self.size) if self.size is not None else None
        return f"Pad(size_divisor={self.size_divisor}, size={size}, pad_value={self.pad_value})"


def pad_annotations(sample: dict, meta: dict, size: tuple[int, int], new_size: tuple[int, int]) -> None:
    """What ``Pad`` does besides the image, in place: masks zero-padded from ``size`` to ``new_size``
    at the bottom and right (boxes do not move), ``pad_shape`` and, if unset, ``img_shape`` recorded."""
    meta.setdefault("img_shape", tuple(size))
    meta["pad_shape"] = tuple(new_size)
    if "masks" in sample and tuple(new_size) != tuple(size):
        masks = np.asarray(sample["masks"])
        padded = np.zeros((masks.shape[0], *new_size), dtype=masks.dtype)
        padded[:, : size[0], : size[1]] = masks
        sample["masks"] = padded
