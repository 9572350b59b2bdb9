"""``data.decode_on_device``: workers ship file bytes; the device decodes, resizes, flips, normalises and pads."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_recipe

from detsdk import Engine
from detsdk.builtin.data.coco import CocoDataset
from detsdk.builtin.transforms.geometric import Pad, RandomFlip, Resize
from detsdk.builtin.transforms.photometric import Normalize, PhotometricDistortion
from detsdk.data.device_decode import DeviceDecode
from detsdk.data.device_normalize import defer_normalize
from detsdk.data.encoded import EncodedDataset, check_decodable, collate_encoded
from detsdk.data.loader import PipelineDataset, collate
from detsdk.errors import DataError, RecipeError

SIZES = [(72, 96), (96, 64), (80, 80), (64, 112)]  # (height, width): wide, tall and square images
PIPELINE = [Resize(scale=[128, 100], keep_ratio=True), RandomFlip(p=0.5), Normalize(), Pad(size_divisor=32)]


def write_coco(root, extension: str = "jpg", sizes=SIZES, recorded_sizes=None) -> str:
    """Smooth textured images with two rectangles each, written as ``extension`` files, and their COCO JSON."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i, (height, width) in enumerate(sizes):
        y, x = np.mgrid[:height, :width]
        image = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
        image = (image + rng.integers(0, 40, (height, width, 3))).clip(0, 255).astype(np.uint8)
        boxes = [(4, 6, width // 2, height // 2), (width // 3, height // 3, width - 5, height - 3)]
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), (255, 40 * k, 0), -1)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": k + 1, "iscrowd": 0,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float((x2 - x1) * (y2 - y1)),
                                "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]]})
        name = f"{i:03d}.{extension}"
        assert cv2.imwrite(str(root / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        recorded = (recorded_sizes or sizes)[i]
        images.append({"id": i + 1, "file_name": name, "height": recorded[0], "width": recorded[1]})
    categories = [{"id": 1, "name": "near"}, {"id": 2, "name": "far"}]
    ann_file = root / "annotations.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(ann_file)


def cpu_and_device_batches(dataset, transforms, epoch: int = 0):
    """The same items through the CPU pipeline (normalising on the host) and through decode_on_device."""
    cpu = PipelineDataset(dataset, transforms)
    encoded = EncodedDataset(dataset, transforms)
    for data in (cpu, encoded):
        data.seed_samples(7)
        data.set_epoch(epoch)
    indices = range(len(dataset))
    cpu_images, cpu_targets, cpu_metas = collate([cpu[i] for i in indices])
    batch, targets, metas = collate_encoded([encoded[i] for i in indices])
    normalize = check_decodable(transforms, "data.train.pipeline")
    images = normalize(DeviceDecode()(batch, torch.device("cpu")), targets)
    return (cpu_images, cpu_targets, cpu_metas), (images, targets, metas)


def test_a_transform_that_cannot_run_on_the_device_is_refused_by_its_recipe_name():
    transforms = [PhotometricDistortion(), Normalize()]
    with pytest.raises(RecipeError, match=r"data\.train\.pipeline\[0\] \('photometric_distortion'\).*resize, random_flip"):
        check_decodable(transforms, "data.train.pipeline", ["photometric_distortion", "normalize"])


def test_a_pipeline_without_a_trailing_normalize_is_refused():
    with pytest.raises(RecipeError, match="must end with normalize"):
        check_decodable([Resize(scale=[64, 64]), RandomFlip()], "data.train.pipeline")


def test_padding_with_another_value_than_zero_is_refused():
    with pytest.raises(RecipeError, match=r"pipeline\[1\].*pad_value = 0"):
        check_decodable([Normalize(), Pad(pad_value=1.0)], "data.train.pipeline")


def test_a_dataset_without_image_files_is_refused():
    class InMemory:
        classes = ["thing"]

        def __len__(self):
            return 1

        def __getitem__(self, index):
            return {"image": np.zeros((8, 8, 3), np.uint8), "boxes": np.zeros((0, 4), np.float32),
                    "labels": np.zeros(0, np.int64)}

    with pytest.raises(RecipeError, match=r"data\.train \(InMemory\) has no get_annotations"):
        EncodedDataset(InMemory(), [Normalize()])


@pytest.mark.parametrize("extension", ["jpg", "png"])  # JPEGs through decode_jpeg, PNGs through decode_image
def test_device_batch_matches_the_cpu_pipeline(tmp_path, extension):
    dataset = CocoDataset(write_coco(tmp_path, extension), images=str(tmp_path), with_masks=True)
    (cpu_images, cpu_targets, cpu_metas), (images, targets, metas) = cpu_and_device_batches(dataset, PIPELINE)

    assert images.shape == cpu_images.shape and images.dtype == torch.float32
    for cpu_target, target in zip(cpu_targets, targets):
        assert target["image_size"] == cpu_target["image_size"]
        for key in ("boxes", "labels", "iscrowd", "masks"):
            assert torch.equal(target[key], cpu_target[key]), key
    for cpu_meta, meta in zip(cpu_metas, metas):
        for key in ("ori_shape", "img_shape", "scale_factor", "flip", "flip_direction", "pad_shape"):
            assert tuple(np.atleast_1d(meta[key])) == tuple(np.atleast_1d(cpu_meta[key])), key
    assert {meta["flip"] for meta in metas} == {True, False}  # both paths of the flip are compared
    # cv2 resizes in fixed point, F.interpolate in float32: rounding differs by one level at most.
    difference = (images - cpu_images).abs()
    assert difference.max() <= 1.01 / 57.12  # one uint8 level over the smallest std
    assert difference.mean() < 0.002


def test_random_draws_are_the_cpu_pipelines_for_each_seed_epoch_and_index(tmp_path):
    dataset = CocoDataset(write_coco(tmp_path, "jpg", sizes=[(64, 80)] * 6), images=str(tmp_path))
    transforms = [Resize(scale=[[64, 48], [128, 96]], multiscale_mode="range"), RandomFlip(p=0.5), Normalize()]
    cpu, encoded = PipelineDataset(dataset, transforms), EncodedDataset(dataset, transforms)
    for data in (cpu, encoded):
        data.seed_samples(3)
    for epoch in (0, 5):
        cpu.set_epoch(epoch)
        encoded.set_epoch(epoch)
        for index in range(len(dataset)):
            expected, got = cpu[index]["meta"], encoded[index]["meta"]
            assert (got["flip"], got["img_shape"]) == (expected["flip"], expected["img_shape"]), (epoch, index)


def test_an_image_whose_size_disagrees_with_its_annotations_is_a_data_error(tmp_path):
    ann_file = write_coco(tmp_path, "jpg", sizes=[(64, 80)], recorded_sizes=[(80, 64)])
    encoded = EncodedDataset(CocoDataset(ann_file, images=str(tmp_path)), PIPELINE)
    batch, _, _ = collate_encoded([encoded[0]])
    with pytest.raises(DataError, match=r"000\.jpg: image is 64x80 but its annotations say 80x64"):
        DeviceDecode()(batch, torch.device("cpu"))


def test_deferred_normalisation_and_decoding_on_the_device_agree(tmp_path):
    # The two device paths of the training pipeline give the same batch from the same JPEGs but for the decoder.
    dataset = CocoDataset(write_coco(tmp_path, "jpg"), images=str(tmp_path))
    deferred, normalize = defer_normalize(PIPELINE)
    cpu = PipelineDataset(dataset, deferred)
    cpu.seed_samples(7)
    uint8_images, cpu_targets, _ = collate([cpu[i] for i in range(len(dataset))])
    _, (images, targets, _) = cpu_and_device_batches(dataset, PIPELINE)
    assert uint8_images.dtype == torch.uint8
    assert (normalize(uint8_images, cpu_targets) - images).abs().max() <= 1.01 / 57.12


def test_training_with_decode_on_device_writes_its_checkpoint(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    ann_file = write_coco(images, "jpg")
    pipeline = [{"type": "resize", "scale": [96, 96]}, {"type": "random_flip", "p": 0.5}, {"type": "normalize"},
                {"type": "pad", "size_divisor": 32}]
    recipe = tiny_recipe(tmp_path / "run", train={"iters": 2, "optimizer": {"type": "sgd", "lr": 0.01}},
                         runtime={"work_dir": str(tmp_path / "run"), "plot_samples": 0})
    recipe["data"].update(batch_size=2, num_workers=1, decode_on_device=True,  # file bytes through a worker
                          train={"type": "coco", "ann_file": ann_file, "images": str(images), "pipeline": pipeline})
    del recipe["data"]["val"]
    engine = Engine.from_recipe(recipe)
    engine.fit()
    assert isinstance(engine.train_data, EncodedDataset)
    assert engine.iteration == 2
    assert (tmp_path / "run" / "last.pt").is_file()


def test_decode_on_device_refuses_an_explicit_normalize_on_device_false(tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["data"].update(decode_on_device=True, normalize_on_device=False)
    with pytest.raises(RecipeError, match="normalize_on_device = false contradicts it"):
        Engine.from_recipe(recipe).fit()


def test_decode_on_device_takes_only_a_boolean(tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["data"]["decode_on_device"] = "yes"
    with pytest.raises(RecipeError, match="data.decode_on_device"):
        Engine.from_recipe(recipe)
