"""Box-relative masks pasted in NumPy (``detsdk.export.mask_paste``) against PyTorch's pastes and resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import paste_masks_in_image

from detsdk.builtin.models.mask_head import paste_masks
from detsdk.export.mask_paste import paste_box_masks

TORCH_PASTES = {"torchvision": paste_masks_in_image, "mmdet": paste_masks}


def random_case(rng, input_size):
    """Smooth random ``K x 1 x 28 x 28`` probabilities and boxes inside the image, some at its edges."""
    masks = F.avg_pool2d(torch.from_numpy(rng.random((6, 1, 28, 28), dtype=np.float32)), 5, 1, 2)
    height, width = input_size
    x1, y1 = rng.uniform(-10, width, 6), rng.uniform(-10, height, 6)
    boxes = np.stack([x1, y1, x1 + rng.uniform(1, 90, 6), y1 + rng.uniform(1, 90, 6)], axis=1)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    return masks, torch.tensor(boxes, dtype=torch.float32)


@pytest.mark.parametrize("paste", ["torchvision", "mmdet"])
@pytest.mark.parametrize("original_size", [None, (97, 61), (180, 230)])
def test_numpy_paste_gives_the_pytorch_detectors_masks_pixel_for_pixel(paste, original_size):
    rng = np.random.default_rng(len(paste) + (original_size or (0,))[0])
    for input_size in ((64, 96), (120, 75)):
        masks, boxes = random_case(rng, input_size)
        size = original_size or input_size
        pasted = TORCH_PASTES[paste](masks, boxes, input_size)
        expected = F.interpolate(pasted, size=size, mode="bilinear", align_corners=False)[:, 0] >= 0.5
        got = paste_box_masks(masks[:, 0].numpy(), boxes.numpy(), input_size, size, paste)
        assert got.dtype == np.uint8 and got.shape == (6, *size)
        assert expected.any()
        np.testing.assert_array_equal(got, expected.numpy().astype(np.uint8))


def test_no_masks_and_a_box_outside_the_image_paste_nothing():
    assert paste_box_masks(np.zeros((0, 28, 28)), np.zeros((0, 4)), (40, 50), (80, 100)).shape == (0, 80, 100)
    outside = paste_box_masks(np.ones((1, 28, 28)), np.array([[60.0, 10.0, 70.0, 20.0]]), (40, 50), (40, 50), "mmdet")
    assert not outside.any()


def test_an_unknown_paste_is_refused():
    with pytest.raises(ValueError, match="expected one of torchvision, mmdet"):
        paste_box_masks(np.zeros((1, 28, 28)), np.zeros((1, 4)), (8, 8), (8, 8), "nearest")
