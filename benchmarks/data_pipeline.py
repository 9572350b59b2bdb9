"""Data pipeline throughput per worker: det-sdk's transforms against torchvision.transforms.v2.

Both sides load the SAME JPEG files (``--images`` shapes images at ``--size``
pixels, re-encoded as JPEG like COCO's, written once into a temp folder) and run
the same operations in one process with one thread, as one DataLoader worker
does. By default that is the pipeline the shipped COCO recipes train with
(``sdk/detsdk/recipes/_base/datasets/coco_detection.toml``), then the batch collate:

- det-sdk: ``CocoDataset[i]`` (OpenCV decode), ``resize [1333, 800] keep_ratio,
  random_flip 0.5, normalize, pad size_divisor 32`` (boxes transformed along), then
  ``detsdk.data.loader.collate`` of ``--batch`` samples;
- det-sdk, normalize on device: the same with ``DeferredNormalize`` (what
  ``data.normalize_on_device`` ships: padded uint8; the engine normalises on the GPU);
- torchvision: ``decode_image(read_file(path))``, ``v2.Compose([Resize(800, max_size=1333),
  RandomHorizontalFlip(0.5), ToDtype(float32), Normalize(mean, std)])`` on ``tv_tensors``,
  zero padding to a multiple of 32, then the same batch stacking (zero-padded to the
  largest image, as ``collate`` and torchvision's ``GeneralizedRCNNTransform`` do).

``--photometric`` puts a photometric distortion first on both sides. Their
algorithms differ (det-sdk: MMDetection's additive brightness, contrast, HSV
saturation and hue; torchvision's ``RandomPhotometricDistort``: multiplicative
brightness, grey-blend saturation, channel permutation), so that row compares
different work; the default compares the same operations.

The sides take turns every ``--chunk`` batches (the order rotating), so a busy
machine slows them alike; each of ``--rounds`` rounds runs ``--count`` images per
side. The report gives the median images/s over rounds and the ratio det-sdk /
torchvision (goal: >= 1.2). Also timed: the transforms alone, on images decoded
beforehand.

Run from the repository root::

    python benchmarks/data_pipeline.py [--images 200 --size 640 --rounds 3 --batch 2 --photometric]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

import detsdk
from detsdk.builtin.data.coco import CocoDataset
from detsdk.builtin.data.shapes import ShapesDataset
from detsdk.builtin.transforms.geometric import Pad, RandomFlip, Resize
from detsdk.builtin.transforms.photometric import IMAGENET_MEAN, IMAGENET_STD, Normalize, PhotometricDistortion
from detsdk.data.device_normalize import defer_normalize
from detsdk.data.loader import apply_pipeline, collate


SDK, TV = "det-sdk (OpenCV decode + pipeline)", "torchvision v2 (decode_image + v2)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="distinct images (default 200)")
    parser.add_argument("--size", type=int, default=640, help="image side in pixels (default 640, COCO-like)")
    parser.add_argument("--count", type=int, default=0, help="images per side and round (default: --images)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--chunk", type=int, default=3, help="batches a side runs before the next takes its turn")
    parser.add_argument("--batch", type=int, default=2, help="samples per collated batch (default 2)")
    parser.add_argument("--photometric", action="store_true",
                        help="put a photometric distortion first (different algorithms on the two sides)")
    args = parser.parse_args(argv)
    args.count = args.count or args.images
    if args.batch < 1 or args.count < args.batch:
        parser.error("need --batch >= 1 and --count >= --batch")
    return args


def jpeg_dataset(folder: Path, count: int, size: int) -> CocoDataset:
    """``count`` shapes images as JPEG files with a COCO annotation file, in ``folder``."""
    shapes = ShapesDataset(split="train", num_images=count, image_size=size, max_objects=6)
    coco = json.loads((shapes.root / "annotations.json").read_text())
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for info in coco["images"]:
        image = cv2.imread(str(shapes.root / "images" / info["file_name"]), cv2.IMREAD_COLOR)
        info["file_name"] = Path(info["file_name"]).with_suffix(".jpg").name
        cv2.imwrite(str(folder / "images" / info["file_name"]), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (folder / "annotations.json").write_text(json.dumps(coco))
    return CocoDataset(ann_file=str(folder / "annotations.json"), images=str(folder / "images"))


def detsdk_pipeline(photometric: bool) -> list:
    """det-sdk's transforms: the COCO recipes' (with ``photometric``: the distortion first)."""
    return [*([PhotometricDistortion()] if photometric else []), Resize(scale=[1333, 800], keep_ratio=True),
            RandomFlip(p=0.5), Normalize(), Pad(size_divisor=32)]


def torchvision_pipeline(photometric: bool):
    """The same operations with torchvision.transforms.v2 (padding follows, in ``torchvision_sample``)."""
    from torchvision.transforms import v2

    return v2.Compose([
        *([v2.RandomPhotometricDistort(p=0.5)] if photometric else []),
        v2.Resize(800, max_size=1333, antialias=True),
        v2.RandomHorizontalFlip(p=0.5),
        v2.ToDtype(torch.float32),
        v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ])


def torchvision_sample(transform, image: torch.Tensor, boxes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample through the v2 pipeline and zero padding to a multiple of 32 (as det-sdk's ``pad``)."""
    from torchvision import tv_tensors

    height, width = image.shape[-2:]
    out_image, out_boxes = transform(
        tv_tensors.Image(image), tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width))
    )
    pad_h, pad_w = -out_image.shape[-2] % 32, -out_image.shape[-1] % 32
    return torch.nn.functional.pad(out_image, (0, pad_w, 0, pad_h)), out_boxes


def stack_batch(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """torchvision's side of the collate: images zero-padded to the largest into one ``B x 3 x H x W`` tensor."""
    height = max(image.shape[-2] for image, _ in samples)
    width = max(image.shape[-1] for image, _ in samples)
    batch = torch.zeros((len(samples), 3, height, width), dtype=samples[0][0].dtype)
    for i, (image, _) in enumerate(samples):
        batch[i, :, : image.shape[-2], : image.shape[-1]] = image
    return batch, [boxes for _, boxes in samples]


def time_chunk(run_one: Callable[[int], object], indices: list[int]) -> float:
    """Seconds to run ``run_one`` on each index."""
    start = time.perf_counter()
    for index in indices:
        run_one(index)
    return time.perf_counter() - start


def time_round(sides: dict[str, Callable[[int], object]], count: int, total: int, chunk: int) -> dict[str, float]:
    """Items (batches) per second of each side over ``count`` items (indices cycling through ``total``), taking turns."""
    seconds = dict.fromkeys(sides, 0.0)
    names = list(sides)
    for turn, start in enumerate(range(0, count, chunk)):
        indices = [(start + i) % total for i in range(min(chunk, count - start))]
        for name in names[turn % len(names):] + names[: turn % len(names)]:
            seconds[name] += time_chunk(sides[name], indices)
    return {name: count / value for name, value in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the report."""
    args = parse_args(argv)
    from torchvision.io import ImageReadMode, decode_image, read_file

    torch.set_num_threads(1)  # one DataLoader worker: one thread
    cv2.setNumThreads(1)
    np.random.seed(0)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="data-pipeline-") as scratch:
        dataset = jpeg_dataset(Path(scratch), args.images, args.size)
        files = [dataset.get_annotations(i)["meta"]["file"] for i in range(len(dataset))]
        boxes = [dataset.get_annotations(i)["boxes"] for i in range(len(dataset))]
        sdk_transforms = detsdk_pipeline(args.photometric)
        deferred, _ = defer_normalize(detsdk_pipeline(args.photometric))
        tv_transform = torchvision_pipeline(args.photometric)
        decoded_sdk = [dataset[i] for i in range(len(dataset))]
        decoded_tv = [decode_image(read_file(f), mode=ImageReadMode.RGB) for f in files]
        size, total = args.batch, len(dataset)

        def members(b: int) -> list[int]:
            return [(b * size + k) % total for k in range(size)]

        # Each side turns batch number ``b`` (its ``--batch`` images) into a collated batch.
        sides: dict[str, Callable[[int], object]] = {
            SDK: lambda b: collate([apply_pipeline(dataset[i], sdk_transforms) for i in members(b)]),
            "det-sdk, normalize on device (uint8 out)": lambda b: collate(
                [apply_pipeline(dataset[i], deferred) for i in members(b)]),
            TV: lambda b: stack_batch([torchvision_sample(
                tv_transform, decode_image(read_file(files[i]), mode=ImageReadMode.RGB), boxes[i]) for i in members(b)]),
            "det-sdk pipeline only (decoded images)": lambda b: collate(
                [apply_pipeline(decoded_sdk[i], sdk_transforms) for i in members(b)]),
            "torchvision v2 only (decoded images)": lambda b: stack_batch(
                [torchvision_sample(tv_transform, decoded_tv[i], boxes[i]) for i in members(b)]),
        }
        for run_one in sides.values():  # warm-up: first calls, allocator, page cache
            time_chunk(run_one, list(range(max(1, 10 // size))))
        rates: dict[str, list[float]] = {name: [] for name in sides}
        batches = args.count // size
        for round_index in range(args.rounds):
            for name, rate in time_round(sides, batches, math.ceil(total / size), args.chunk).items():
                rates[name].append(rate * size)  # batches/s -> images/s
            print(f"round {round_index + 1}: " + ", ".join(f"{n.split(' (')[0]} {rates[n][-1]:.1f}" for n in sides),
                  flush=True)

    median = {name: statistics.median(values) for name, values in rates.items()}
    sdk, tv = median[SDK], median[TV]
    only_ratio = median["det-sdk pipeline only (decoded images)"] / median["torchvision v2 only (decoded images)"]
    import torchvision

    command = "python benchmarks/data_pipeline.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    print()
    print(f"command: `{command}`")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, OpenCV {cv2.__version__}, "
          f"det-sdk {detsdk.__version__}, python {platform.python_version()}; one thread (one worker)")
    operations = ("photometric distortion (different algorithms), " if args.photometric else "") + \
        "resize, flip, normalize, pad, collate"
    print(f"{args.images} JPEG images {args.size}x{args.size} -> 800x800 (+ pad); {operations}; batch {size}; "
          f"{args.rounds} rounds x {batches * size} images per side")
    print()
    print("| pipeline (one worker) | median images/s | per-round images/s |")
    print("| --- | ---: | --- |")
    for name, values in rates.items():
        print(f"| {name} | {median[name]:.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    per_round = [a / b for a, b in zip(rates[SDK], rates[TV])]
    print(f"| **ratio det-sdk / torchvision** (decode + transforms) | **{sdk / tv:.2f}** | "
          f"{', '.join(f'{r:.2f}' for r in per_round)}; goal >= 1.2: {'met' if sdk / tv >= 1.2 else 'NOT met'} |")
    print(f"| ratio det-sdk / torchvision (transforms only) | {only_ratio:.2f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
