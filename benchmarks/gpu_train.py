"""GPU training throughput: Faster R-CNN R50-FPN at 1333x800, det-sdk's precision options against plain torchvision.

One CUDA GPU, one process, synthetic 1333x800 images (random pixels and boxes,
generated in memory: no dataset needed), batch ``--batch`` per iteration:

- plain torchvision: ``torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None,
  weights_backbone=None)`` (BatchNorm, every layer trainable) trained by the loop of
  torchvision's detection reference (DataLoader -> model(images, targets) -> sum ->
  zero_grad / backward / step), in fp32 and under ``torch.autocast(bfloat16)``;
- det-sdk ``Engine.fit`` with the same architecture (resnet 50 ``norm = "bn"``,
  ``frozen_stages = -1``, FPN 256, torchvision's RPN and box head defaults) in four
  configurations: fp32; ``train.amp = "bf16"``; bf16 + ``train.channels_last``;
  bf16 + channels_last + ``train.compile`` (the backbone, inductor).

Both sides: SGD (lr 0.01, momentum 0.9, wd 1e-4), ``--workers`` loader workers with
pinned memory; det-sdk ships uint8 and normalises on the GPU (``data.normalize_on_device``),
the plain loop sends uint8 and converts on the GPU before torchvision's own transform.
An iteration is timed from the end of one optimizer step to the end of the next
(``torch.cuda.synchronize``), after ``--warmup`` iterations (compilation happens there).

``--all`` runs the issue's comparison, each configuration in its own process:
plain torchvision fp32, plain torchvision bf16 + ``model.compile()`` (what a user
would do by hand) and ``sdk_fastest`` (bf16, channels_last, the whole detector
compiled with its sync-free heads, fused SGD), then 300 det-sdk bf16 iterations from
the initial weights with warm-up, which must end without a NaN (a few minutes on an H100/H200,
most of it compiling).

Run from the repository root on a CUDA machine (about 3-4 minutes on an H100)::

    pip install -e .            # det-sdk and its dependencies, if not installed
    python benchmarks/gpu_train.py --all
    python benchmarks/gpu_train.py [--batch 2 --iters 20 --warmup 5 --only sdk_bf16,plain_fp32]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
try:
    import detsdk
except ImportError:  # a checkout that was not pip-installed
    sys.path.insert(0, str(REPO / "sdk"))
    import detsdk
from detsdk.errors import TrainingError

HEIGHT, WIDTH, NUM_CLASSES = 800, 1333, 80
CONFIGS = {  # name -> (side, [train] keys for det-sdk / (autocast dtype, compile) for plain)
    "plain_fp32": ("plain", (None, False)),
    "plain_bf16": ("plain", (torch.bfloat16, False)),
    "plain_bf16_compile": ("plain", (torch.bfloat16, True)),
    "sdk_fp32": ("sdk", {}),
    "sdk_bf16": ("sdk", {"amp": "bf16"}),
    "sdk_bf16_channels_last": ("sdk", {"amp": "bf16", "channels_last": True}),
    "sdk_bf16_channels_last_compile": ("sdk", {"amp": "bf16", "channels_last": True, "compile": True}),
    # det-sdk's fastest: sync-free heads, the whole detector compiled, fused SGD (automatic on CUDA).
    "sdk_fastest": ("sdk", {"amp": "bf16", "channels_last": True, "compile": {"scope": "model", "pad_multiple": 32}}),
    "sdk_fastest_cudagraphs": ("sdk", {"amp": "bf16", "channels_last": True,
                                       "compile": {"scope": "model", "pad_multiple": 32, "mode": "reduce-overhead"}}),
}
# --all: what the issue compares (each in its own process), then the bf16 stability run.
ALL = ["plain_fp32", "plain_bf16_compile", "sdk_fastest"]
STABILITY = {"amp": "bf16", "channels_last": True}  # the fastest's numerics, eager (no compile time)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="images per iteration (default 2)")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per configuration (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (default 5)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers (default 4)")
    parser.add_argument("--only", default="", help=f"comma-separated configurations (default all: {', '.join(CONFIGS)})")
    parser.add_argument("--all", action="store_true",
                        help=f"the issue's comparison, one process per configuration: {', '.join(ALL)}, "
                             "then --stability-iters bf16 iterations")
    parser.add_argument("--stability-iters", type=int, default=300,
                        help="with --all: bf16 iterations from the initial weights, with warm-up (default 300)")
    parser.add_argument("--json", default="", help=argparse.SUPPRESS)  # a child process writes its result here
    args = parser.parse_args(argv)
    args.configs = [c.strip() for c in args.only.split(",") if c.strip()] or (ALL if args.all else list(CONFIGS))
    unknown = [c for c in args.configs if c not in CONFIGS and not (args.json and c == "stability")]
    if unknown:
        parser.error(f"unknown configuration {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    return args


class SyntheticDetection:
    """``num_images`` random 1333x800 RGB images with 1-10 random boxes each (a pool of 8 distinct images)."""

    def __init__(self, num_images: int = 64, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.classes = [f"class{i}" for i in range(NUM_CLASSES)]
        self.num_images = num_images
        self.pool = []
        for _ in range(8):
            count = int(rng.integers(1, 11))
            xy = rng.uniform(0, [WIDTH - 64, HEIGHT - 64], size=(count, 2))
            wh = rng.uniform(32, 400, size=(count, 2))
            boxes = np.concatenate([xy, np.minimum(xy + wh, [WIDTH, HEIGHT])], axis=1).astype(np.float32)
            image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            self.pool.append((image, boxes, rng.integers(0, NUM_CLASSES, count).astype(np.int64)))

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict:
        image, boxes, labels = self.pool[index % len(self.pool)]
        return {"image": image, "boxes": boxes.copy(), "labels": labels.copy(), "iscrowd": np.zeros(len(labels), bool),
                "meta": {"image_id": index, "file": f"synthetic-{index}"}}


class BenchmarkPlugin:
    """Registers the synthetic dataset and stamps the time after every det-sdk iteration."""

    stamps: list[float] = []

    @detsdk.hookimpl
    def detsdk_register_datasets(self, register):
        register("synthetic_detection", SyntheticDetection, description="gpu_train.py's random images")

    @detsdk.hookimpl
    def detsdk_after_train_iter(self, engine, iteration, losses):
        torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())


def sdk_recipe(train: dict, args: argparse.Namespace, work_dir: Path, iters: int | None = None) -> dict:
    """det-sdk's recipe for torchvision's fasterrcnn_resnet50_fpn(weights=None) on the synthetic data."""
    iters = iters or args.warmup + args.iters
    return {
        "model": {
            "type": "faster_rcnn",
            "backbone": {"type": "resnet", "depth": 50, "norm": "bn", "frozen_stages": -1},
            "neck": {"type": "fpn", "out_channels": 256},
            "rpn_head": {"type": "rpn_head"},
            "box_head": {"type": "shared2fc_box_head"},
        },
        "data": {
            "batch_size": args.batch, "num_workers": args.workers,
            "train": {"type": "synthetic_detection", "num_images": args.batch * iters,
                      "pipeline": [{"type": "normalize"}, {"type": "pad", "size_divisor": 32}]},
        },
        "train": {"iters": iters, "log_interval": 1000,
                  "optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}, **train},
        "runtime": {"work_dir": str(work_dir), "plot_samples": 0, "device": "cuda"},
    }


def run_sdk(train: dict, args: argparse.Namespace, work_dir: Path) -> list[float]:
    """Train with ``Engine.fit``; the plugin's timestamps, one per iteration."""
    BenchmarkPlugin.stamps = []
    engine = detsdk.Engine.from_recipe(sdk_recipe(train, args, work_dir))
    engine.fit()
    del engine
    return list(BenchmarkPlugin.stamps)


def _plain_collate(samples: list[dict]):
    images = [torch.from_numpy(s["image"]).permute(2, 0, 1) for s in samples]
    targets = [{"boxes": torch.from_numpy(s["boxes"]), "labels": torch.from_numpy(s["labels"]) + 1} for s in samples]
    return images, targets


def run_stability(args: argparse.Namespace, work_dir: Path) -> str:
    """``--stability-iters`` det-sdk bf16 iterations from the initial weights (lr 0.02, linear warm-up over
    the first 100); "stable" or the error that stopped them."""
    train = {**STABILITY, "optimizer": {"type": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-4},
             "scheduler": {"type": "constant", "warmup_iters": 100, "warmup_ratio": 0.001}}
    recipe = sdk_recipe(train, args, work_dir, iters=args.stability_iters)
    recipe["train"].update(train)
    recipe["train"]["log_interval"] = 50
    try:
        detsdk.Engine.from_recipe(recipe).fit()
    except TrainingError as exc:
        return f"stopped: {exc}"
    return f"stable: no NaN or infinite loss in {args.stability_iters} bf16 iterations"


def run_plain(setting: tuple, args: argparse.Namespace) -> list[float]:
    """torchvision's reference loop on fasterrcnn_resnet50_fpn(weights=None); a timestamp after each step."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    device = torch.device("cuda")
    dtype, compiled = setting
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1).to(device)
    if compiled:  # what a user would do by hand
        model.compile()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                                weight_decay=1e-4)
    dataset = SyntheticDetection(args.batch * (args.warmup + args.iters))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                         collate_fn=_plain_collate, pin_memory=True)
    model.train()
    stamps = []
    for images, targets in loader:
        images = [image.to(device, non_blocking=True).float().div_(255) for image in images]
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    return stamps


def run_config(name: str, args: argparse.Namespace, scratch: Path) -> list[float]:
    """Time one configuration in this process: the iteration times after warm-up."""
    side, setting = CONFIGS[name]
    stamps = run_plain(setting, args) if side == "plain" else run_sdk(setting, args, scratch / name)
    return [b - a for a, b in zip(stamps[args.warmup - 1:], stamps[args.warmup:])]


def in_child(name: str, args: argparse.Namespace, scratch: Path) -> dict:
    """Run ``name`` (or ``"stability"``) in a fresh Python process; its JSON result."""
    out = scratch / f"{name}.json"
    command = [sys.executable, __file__, "--only", name, "--batch", str(args.batch), "--iters", str(args.iters),
               "--warmup", str(args.warmup), "--workers", str(args.workers),
               "--stability-iters", str(args.stability_iters), "--json", str(out)]
    completed = subprocess.run(command, check=False)
    if completed.returncode or not out.is_file():
        return {"error": f"exit code {completed.returncode}"}
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    """Run each configuration and print the table."""
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu_train.py needs a CUDA GPU, and torch {torch.__version__} sees none "
              "(torch.cuda.is_available() is False); run it on a CUDA machine.", file=sys.stderr)
        return 1
    import torchvision

    from detsdk.plugins import get_registry

    torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels, both sides
    get_registry().add_plugin("gpu-train-benchmark", "0", BenchmarkPlugin)
    results: dict[str, list[float]] = {}
    stability = ""
    with tempfile.TemporaryDirectory(prefix="gpu-train-") as scratch:
        scratch = Path(scratch)
        if args.json:  # a child process: one configuration (or the stability run), result to --json
            name = args.configs[0]
            result = {"stability": run_stability(args, scratch / "stability")} if name == "stability" else {
                "times": run_config(name, args, scratch)}
            Path(args.json).write_text(json.dumps(result))
            return 0
        for name in args.configs:
            started = time.perf_counter()
            result = in_child(name, args, scratch) if args.all else {"times": run_config(name, args, scratch)}
            if "error" in result:
                print(f"{name}: failed ({result['error']})", flush=True)
                continue
            times = results[name] = result["times"]
            print(f"{name}: median {statistics.median(times):.4f} s/iter over {len(times)} iterations "
                  f"({time.perf_counter() - started:.0f} s with warm-up)", flush=True)
            gc.collect()
            torch.cuda.empty_cache()
        if args.all:
            stability = in_child("stability", args, scratch).get("stability", "failed to run")

    medians = {name: statistics.median(times) for name, times in results.items()}
    print()
    print(f"command: `{' '.join(['python benchmarks/gpu_train.py', *sys.argv[1:]])}`")
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"det-sdk {detsdk.__version__}, python {platform.python_version()}")
    print(f"Faster R-CNN R50-FPN, {WIDTH}x{HEIGHT} synthetic images, batch {args.batch}, {args.workers} workers; "
          f"{args.iters} timed iterations after {args.warmup} warm-up")
    print()
    print("| configuration | median s/iter | images/s | vs plain fp32 | vs plain bf16 + compile |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, median in medians.items():
        ratios = [f"{medians[base] / median:.2f}x" if base in medians else "-"
                  for base in ("plain_fp32", "plain_bf16_compile")]
        print(f"| {name} | {median:.4f} | {args.batch / median:.1f} | {' | '.join(ratios)} |")
    if stability:
        print()
        print(f"bf16 stability ({args.stability_iters} iterations from the initial weights, warm-up 100): {stability}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
