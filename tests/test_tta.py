"""Test-time augmentation: variants mapped back to the original image and merged by class-wise NMS."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_recipe
from torch import nn
from torchvision.ops import batched_nms

from detsdk.builtin.transforms.geometric import Pad, Resize
from detsdk.engine import Engine
from detsdk.engine.tta import TTASettings, detect_with_tta, merge_detections, tta_settings, variant_pipelines
from detsdk.errors import RecipeError
from detsdk.recipe import load_recipe, validate_recipe


class RedBlobDetector(nn.Module):
    """A tiny 'model': the box around the red pixels (label 0), and the same box 3 px to the right (label 1).

    Scores grow with the input width and when the blob is in the right half, so detections from
    different variants differ and NMS must choose.
    """

    def forward(self, images, image_sizes):
        outputs = []
        for image, (height, width) in zip(images, image_sizes):
            red = (image[0, :height, :width] > 128) & (image[1, :height, :width] < 128)
            ys, xs = torch.nonzero(red, as_tuple=True)
            box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            on_right = float((xs.float().mean() > width / 2).item())
            score = 0.5 + 0.2 * width / 200 + 0.2 * on_right
            outputs.append({
                "boxes": torch.stack([box, box + torch.tensor([3.0, 0, 3, 0])]),
                "scores": torch.tensor([score, score / 2]),
                "labels": torch.tensor([0, 1]),
            })
        return outputs


def red_rectangle_image(x1=10, y1=12, x2=35, y2=40, height=60, width=80) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[y1:y2, x1:x2] = (255, 0, 0)
    return image


def run_by_hand(model, image, scale, flip):
    """Resize (keep ratio) and flip with OpenCV/numpy, detect, and map boxes back without the pipeline's meta."""
    height, width = image.shape[:2]
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    new_w, new_h = int(width * factor + 0.5), int(height * factor + 0.5)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if flip:
        resized = np.ascontiguousarray(resized[:, ::-1])
    tensor = torch.from_numpy(resized).permute(2, 0, 1)[None].float()
    output = model(tensor, image_sizes=[(new_h, new_w)])[0]
    boxes = output["boxes"].numpy().astype(np.float64)
    if flip:
        boxes[:, [0, 2]] = new_w - boxes[:, [2, 0]]
    boxes /= [new_w / width, new_h / height, new_w / width, new_h / height]
    return boxes, output["scores"].numpy(), output["labels"].numpy()


def test_merged_output_equals_hand_run_on_resized_and_flipped_images_then_nms():
    model, image = RedBlobDetector().eval(), red_rectangle_image()
    settings = TTASettings(scales=((100, 75), (160, 120)), flip=True, iou_threshold=0.5)
    pipeline = [Resize(scale=[1333, 800]), Pad(size_divisor=32)]
    result = detect_with_tta(model, [{"image": image, "meta": {}}], pipeline, settings, torch.device("cpu"))[0]

    runs = [run_by_hand(model, image, scale, flip) for scale in settings.scales for flip in (False, True)]
    boxes, scores, labels = (np.concatenate(parts) for parts in zip(*runs))
    keep = batched_nms(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), torch.tensor(labels), 0.5)
    assert len(keep) == 2  # one winner per class: every variant found the same objects
    np.testing.assert_allclose(result["boxes"], boxes[keep], atol=1e-4)
    np.testing.assert_allclose(result["scores"], scores[keep])
    np.testing.assert_array_equal(result["labels"], labels[keep])
    # The blob is on the left, so a flipped, larger variant wins: its shifted box (label 1) came back
    # on the left of the blob, where only a correct un-flip puts it.
    assert result["labels"][1] == 1 and result["boxes"][1][0] == pytest.approx(10 - 3 / 2)


def test_flip_on_a_symmetric_image_maps_back_onto_the_same_box():
    model = RedBlobDetector().eval()
    image = red_rectangle_image(x1=20, x2=60)  # centred in the 80 px wide image: a flip changes nothing
    plain = detect_with_tta(model, [{"image": image, "meta": {}}], [], TTASettings(scales=((80, 60),)),
                            torch.device("cpu"))[0]
    flipped = detect_with_tta(model, [{"image": image, "meta": {}}], [], TTASettings(flip=True),
                              torch.device("cpu"))[0]
    np.testing.assert_allclose(flipped["boxes"][flipped["labels"] == 0], [[20, 12, 60, 40]])
    np.testing.assert_allclose(plain["boxes"][plain["labels"] == 0], [[20, 12, 60, 40]])


def test_variant_pipelines_replace_the_resize_scale_and_drop_random_flips():
    from detsdk.builtin.transforms.geometric import RandomFlip

    settings = TTASettings(scales=((64, 48), (128, 96)), flip=True)
    pipelines = variant_pipelines([Resize(scale=[1333, 800], keep_ratio=False), RandomFlip(p=0.5), Pad()], settings)
    assert len(pipelines) == settings.num_variants == 4
    assert [p[-2].scales[0] for p in pipelines] == [(64, 48), (64, 48), (128, 96), (128, 96)]
    assert all(not p[-2].keep_ratio for p in pipelines)
    assert [isinstance(p[0], RandomFlip) and p[0].p == 1.0 for p in pipelines] == [False, True, False, True]
    assert sum(isinstance(t, RandomFlip) for p in pipelines for t in p) == 2


def test_merge_keeps_each_winner_with_its_own_mask():
    masks = np.zeros((3, 10, 10), np.uint8)
    for i in range(3):
        masks[i, i] = 1  # mask i marks row i
    found = [
        {"boxes": np.array([[0, 0, 5, 5.0], [5, 5, 9, 9]]), "scores": np.array([0.6, 0.9]),
         "labels": np.array([0, 0]), "masks": masks[:2]},
        {"boxes": np.array([[0, 0, 5, 5.2]]), "scores": np.array([0.8]), "labels": np.array([0]), "masks": masks[2:]},
    ]
    merged = merge_detections(found, iou_threshold=0.5, max_per_image=10)
    np.testing.assert_allclose(merged["scores"], [0.9, 0.8])
    assert [int(m.nonzero()[0][0]) for m in merged["masks"]] == [1, 2]
    assert len(merge_detections(found, 0.5, max_per_image=1)["scores"]) == 1


class RedMaskDetector(RedBlobDetector):
    """Like ``RedBlobDetector``, with Mask R-CNN's output masks: N×1×H×W probabilities in input pixels."""

    def forward(self, images, image_sizes):
        outputs = super().forward(images, image_sizes)
        for output, image in zip(outputs, images):
            red = ((image[0] > 128) & (image[1] < 128)).float()
            output["masks"] = torch.stack([red, red])[:, None]
        return outputs


def test_masks_come_back_on_the_original_object_through_scales_and_flips():
    image = red_rectangle_image()
    settings = TTASettings(scales=((100, 75), (160, 120)), flip=True)
    pipeline = [Resize(scale=[1333, 800]), Pad(size_divisor=32)]
    result = detect_with_tta(RedMaskDetector().eval(), [{"image": image, "meta": {}}], pipeline, settings,
                             torch.device("cpu"))[0]
    truth = np.all(image == (255, 0, 0), axis=2)
    assert result["masks"].shape == (2, 60, 80)
    for mask in result["masks"]:
        assert (mask.astype(bool) == truth).mean() > 0.99 and mask[truth].all()


def count_forward_calls(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_engine_evaluate_and_predict_run_every_variant(tmp_path):
    tta = {"scales": [[64, 64], [96, 96]], "flip": True, "iou_threshold": 0.6}
    engine = Engine.from_recipe(tiny_recipe(tmp_path, eval={"tta": tta}))
    engine.evaluate()  # builds the model; 4 val images, batch 4: one batch
    calls = count_forward_calls(engine.model)
    metrics = engine.evaluate()
    assert calls[0] == 4 and "bbox_mAP" in metrics
    result = engine.predict(np.zeros((50, 70, 3), np.uint8))
    # predict: four variants, on a copy that keeps the hook, plus the example run that folds its BatchNorms
    assert calls[0] == 4 + 4 + 1 and result.boxes.shape[1] == 4
    engine.save("tta.pt")
    from detsdk.engine.predictor import load_detector

    assert load_detector(tmp_path / "tta.pt", device="cpu").tta == tta_settings(tta)


def test_engine_evaluate_without_tta_runs_the_model_once_per_batch(tmp_path):
    engine = Engine.from_recipe(tiny_recipe(tmp_path))
    engine.evaluate()
    calls = count_forward_calls(engine.model)
    engine.evaluate()
    assert calls[0] == 1


@pytest.mark.parametrize(
    ("tta", "message"),
    [
        ({"scales": [[1333]]}, r"eval\.tta\.scales"),
        ({"flip": "yes"}, r"eval\.tta\.flip"),
        ({"flip": True, "iou_threshold": 0}, r"eval\.tta\.iou_threshold"),
        ({"flip": True, "flips": True}, r"unknown key 'flips' \(did you mean 'flip'\?\)"),
        ({"flip": False}, r"eval\.tta: nothing to augment"),
        ({"flip": True, "max_per_image": 0}, r"eval\.tta\.max_per_image"),
    ],
)
def test_bad_tta_settings_fail_validation_naming_the_key(tta, message):
    with pytest.raises(RecipeError, match=message):
        validate_recipe(load_recipe({"eval": {"tta": tta}}))


def test_tta_is_off_by_default():
    assert tta_settings({}) is None
    validate_recipe(load_recipe({"eval": {"batch_size": 1}}))
