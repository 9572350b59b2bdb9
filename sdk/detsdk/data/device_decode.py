"""``data.decode_on_device``, the device's side: decode, resize, flip and pad a batch where the model runs.

``DeviceDecode`` turns an ``EncodedBatch`` (``detsdk.data.encoded``) into the
zero-padded uint8 ``B×3×H×W`` batch that ``collate`` would have stacked from
the CPU pipeline's deferred-normalisation samples; ``DeviceNormalize`` then
normalises it, as with ``data.normalize_on_device``. JPEGs are decoded together
with ``torchvision.io.decode_jpeg(list, device=...)`` (nvJPEG on CUDA, libjpeg
on the CPU); other formats with ``torchvision.io.decode_image`` on the CPU,
then moved. Each image is resized with ``F.interpolate`` (bilinear,
``align_corners = False``, no antialiasing: the sampling of cv2's
``INTER_LINEAR``) and rounded to uint8 as cv2 rounds.

Against the CPU pipeline (cv2 decode and resize), measured on the CPU with
the JPEGs and PNGs of ``tests/test_decode_on_device.py``: boxes, masks, sizes
and metas are equal; decoding alone is identical (0 levels: libjpeg-turbo on
both sides); after the resize (64 to 112 px images up to at most 128 px) pixels
differ by at most 1 uint8 level (0.0175 after normalisation), 0.08 levels on
average (0.0014); downscaling 300×400 to 96×128, at most 1 level, 0.04 on
average. nvJPEG on CUDA was not measured (no GPU here) and may round its IDCT
differently. EXIF orientation is not applied (nvJPEG cannot); an image whose
decoded size is not the ``ori_shape`` its annotations give is a ``DataError``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torchvision.io import ImageReadMode

from detsdk.data.encoded import EncodedBatch
from detsdk.errors import DataError

JPEG_MAGIC = bytes([0xFF, 0xD8, 0xFF])


class DeviceDecode:
    """Decode an ``EncodedBatch`` on ``device`` into a zero-padded uint8 ``B×3×H×W`` batch, per its metas."""

    def __call__(self, batch: EncodedBatch, device: torch.device) -> torch.Tensor:
        """The batch's images decoded, resized to ``img_shape``, flipped, and padded to the largest ``pad_shape``."""
        images = decode_images(batch, device)
        pad_shapes = [tuple(meta.get("pad_shape", meta["img_shape"])) for meta in batch.metas]
        height, width = max(s[0] for s in pad_shapes), max(s[1] for s in pad_shapes)
        out = torch.zeros((len(images), 3, height, width), dtype=torch.uint8, device=device)
        for i, (image, meta) in enumerate(zip(images, batch.metas)):
            image = resize(image, tuple(meta["img_shape"]))
            if meta.get("flip_direction"):
                image = image.flip(-1 if meta["flip_direction"] == "horizontal" else -2)
            out[i, :, : image.shape[1], : image.shape[2]] = image
        return out


def decode_images(batch: EncodedBatch, device: torch.device) -> list[torch.Tensor]:
    """Each image of the batch as a 3×H×W uint8 RGB tensor on ``device``, checked against its ``ori_shape``."""
    data = [torch.from_numpy(encoded) for encoded in batch.data]
    is_jpeg = [encoded[:3].tobytes() == JPEG_MAGIC for encoded in batch.data]
    jpegs = [tensor for tensor, jpeg in zip(data, is_jpeg) if jpeg]
    try:  # one call for all JPEGs: nvJPEG decodes them as a batch
        decoded = iter(torchvision.io.decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device) if jpegs else [])
    except RuntimeError as exc:
        files = ", ".join(meta["file"] for meta, jpeg in zip(batch.metas, is_jpeg) if jpeg)
        raise DataError(f"cannot decode the JPEG files of a batch ({files}): {exc}") from exc
    images = []
    for tensor, jpeg, meta in zip(data, is_jpeg, batch.metas):
        try:
            image = next(decoded) if jpeg else torchvision.io.decode_image(tensor, mode=ImageReadMode.RGB).to(device)
        except RuntimeError as exc:  # not an image torchvision reads (PNG, GIF, WebP, AVIF and JPEG it does)
            raise DataError(f"cannot decode image file {meta['file']}: {exc}") from exc
        if tuple(image.shape[1:]) != tuple(meta["ori_shape"]):
            raise DataError(
                f"{meta['file']}: image is {image.shape[1]}x{image.shape[2]} but its annotations say "
                f"{meta['ori_shape'][0]}x{meta['ori_shape'][1]} (height x width); data.decode_on_device scales "
                "the boxes from the annotations' size, so they must agree"
            )
        images.append(image)
    return images


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A 3×H×W uint8 image resized bilinearly to ``size`` (height, width), rounded like cv2's ``INTER_LINEAR``."""
    if tuple(image.shape[1:]) == size:
        return image
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=False)
    return resized[0].round_().clamp_(0, 255).to(torch.uint8)
