"""Box-relative mask probabilities pasted into the original image in NumPy, as PyTorch pastes them. Free of torch.

An exported Mask R-CNN returns each detection's ``M x M`` own-class mask
probabilities (MMDeploy's layout) instead of ``H x W`` ones: a graph that pasted
inside ran ONNX Runtime's loop over detections and wrote ``K x H x W`` floats
(430 MB for 100 detections at 800x1333). Here each mask is pasted only where its
box is, with the same bilinear sampling, in float32, as the PyTorch path:

1. at the network input's size, the head's own paste: ``"torchvision"``
   (``paste_masks_in_image``: the mask padded by a pixel, the box scaled to match,
   truncated to integers and one pixel larger, resized with ``F.interpolate``) or
   ``"mmdet"`` (``paste_masks``: every pixel centre samples the mask, zero outside);
2. then, as ``to_original_coordinates`` does, resized to the original image
   (``F.interpolate(mode="bilinear", align_corners=False)``) and cut at 0.5.

Bilinear resampling is separable, so each step is two gathers along one axis.
"""

from __future__ import annotations

import math

import numpy as np

PASTES = ("torchvision", "mmdet")


def resize_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``F.interpolate(mode="bilinear", align_corners=False)`` along one axis: for each output index
    the two input indices and the second one's weight (float32, negative sources clamped to 0)."""
    scale = np.float32(in_size / out_size)
    source = np.maximum((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    low = np.minimum(source.astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (source - low).astype(np.float32)


def sample_taps(points: np.ndarray, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``grid_sample(align_corners=False, padding_mode="zeros")`` along one axis at ``points`` (input
    pixel coordinates): both input indices (clipped) and both weights, zero where an index falls outside."""
    low = np.floor(points).astype(np.int64)
    high_weight = (points - low).astype(np.float32)
    low_weight = 1 - high_weight
    low_weight[(low < 0) | (low > in_size - 1)] = 0
    high_weight[(low + 1 < 0) | (low + 1 > in_size - 1)] = 0
    return np.clip(low, 0, in_size - 1), np.clip(low + 1, 0, in_size - 1), low_weight, high_weight


def interpolate(array: np.ndarray, rows, columns) -> np.ndarray:
    """``array`` resampled by row taps then column taps (each ``resize_taps`` or ``sample_taps``)."""
    return _along(_along(array, rows, axis=0), columns, axis=1)


def _along(array: np.ndarray, taps, axis: int) -> np.ndarray:
    if len(taps) == 3:
        low, high, weight = taps
        low_weight = 1 - weight
    else:
        low, high, low_weight, high_weight = taps
        weight = high_weight
    shape = (-1, 1) if axis == 0 else (1, -1)
    return (np.take(array, low, axis=axis) * low_weight.reshape(shape)
            + np.take(array, high, axis=axis) * weight.reshape(shape))


def paste_at_input(mask: np.ndarray, box: np.ndarray, input_size: tuple[int, int], paste: str):
    """One ``M x M`` mask pasted at ``box`` (input pixels) into an image of ``input_size``: the
    pasted probabilities and their top-left corner ``(y, x)``, or None when nothing lands inside."""
    height, width = input_size
    size = mask.shape[-1]
    if paste == "mmdet":
        x1, y1, x2, y2 = (float(v) for v in box)
        left, top = max(math.floor(x1), 0), max(math.floor(y1), 0)
        right, bottom = min(math.ceil(x2), width), min(math.ceil(y2), height)
        if right <= left or bottom <= top:
            return None
        xs = (np.arange(left, right, dtype=np.float32) + np.float32(0.5) - np.float32(x1)) / np.float32(max(x2 - x1, 1e-6))
        ys = (np.arange(top, bottom, dtype=np.float32) + np.float32(0.5) - np.float32(y1)) / np.float32(max(y2 - y1, 1e-6))
        # grid_sample un-normalises (2u - 1) back to u * M - 0.5 pixels of the mask
        return interpolate(mask, sample_taps(ys * size - 0.5, size), sample_taps(xs * size - 0.5, size)), (top, left)
    padded = np.pad(mask, 1)  # torchvision's expand_masks: one pixel of zeros round the mask
    scale = np.float32((size + 2) / size)
    x1, y1, x2, y2 = (np.float32(v) for v in box)
    half_w, half_h = (x2 - x1) * np.float32(0.5) * scale, (y2 - y1) * np.float32(0.5) * scale
    centre_x, centre_y = (x2 + x1) * np.float32(0.5), (y2 + y1) * np.float32(0.5)
    # expand_boxes, then .to(int64): truncation toward zero
    bx1, bx2 = int(centre_x - half_w), int(centre_x + half_w)
    by1, by2 = int(centre_y - half_h), int(centre_y + half_h)
    box_w, box_h = max(bx2 - bx1 + 1, 1), max(by2 - by1 + 1, 1)
    left, right = max(bx1, 0), min(bx2 + 1, width)
    top, bottom = max(by1, 0), min(by2 + 1, height)
    if right <= left or bottom <= top:
        return None
    rows, columns = resize_taps(box_h, size + 2), resize_taps(box_w, size + 2)
    rows = tuple(t[top - by1 : bottom - by1] for t in rows)
    columns = tuple(t[left - bx1 : right - bx1] for t in columns)
    return interpolate(padded, rows, columns), (top, left)


def paste_box_masks(masks: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int],
                    original_size: tuple[int, int], paste: str = "torchvision") -> np.ndarray:
    """``K x M x M`` probabilities at ``boxes`` (``K x 4``, the network input's pixels) as ``K x H x W``
    uint8 masks of the original image (``original_size``), as the PyTorch detector returns them."""
    if paste not in PASTES:
        raise ValueError(f"mask paste {paste!r}: expected one of {', '.join(PASTES)}")
    masks = np.asarray(masks, dtype=np.float32)
    in_h, in_w = input_size
    out_h, out_w = original_size
    result = np.zeros((len(masks), out_h, out_w), np.uint8)
    rows_all, columns_all = resize_taps(out_h, in_h), resize_taps(out_w, in_w)
    for k, (mask, box) in enumerate(zip(masks, np.asarray(boxes, dtype=np.float32))):
        pasted = paste_at_input(mask, box, input_size, paste)
        if pasted is None:
            continue
        local, (top, left) = pasted
        if (in_h, in_w) == (out_h, out_w):  # resizing to the same size samples every pixel at itself
            result[k, top : top + local.shape[0], left : left + local.shape[1]] = local >= 0.5
            continue
        # The output rows and columns whose two source taps can reach the pasted block.
        rows = _reaching(rows_all, top, top + local.shape[0])
        columns = _reaching(columns_all, left, left + local.shape[1])
        if not len(rows) or not len(columns):
            continue
        # Taps into the block, with one pixel of zeros round it for taps just outside.
        block = np.pad(local, 1)
        row_taps = tuple(t[rows] for t in rows_all)
        column_taps = tuple(t[columns] for t in columns_all)
        row_taps = (np.clip(row_taps[0] - top + 1, 0, block.shape[0] - 1),
                    np.clip(row_taps[1] - top + 1, 0, block.shape[0] - 1), row_taps[2])
        column_taps = (np.clip(column_taps[0] - left + 1, 0, block.shape[1] - 1),
                       np.clip(column_taps[1] - left + 1, 0, block.shape[1] - 1), column_taps[2])
        values = interpolate(block, row_taps, column_taps)
        result[k, rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1] = values >= 0.5
    return result


def _reaching(taps, start: int, stop: int) -> np.ndarray:
    """Output indices one of whose taps lies in ``[start, stop)`` (a contiguous range, resampling being monotonic)."""
    low, high, _ = taps
    return np.nonzero((high >= start) & (low < stop))[0]
