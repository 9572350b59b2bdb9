"""RTMDet-tiny against Faster R-CNN on the shapes quickstart: bbox mAP, training wall time, predict images/s.

In one run, one side after the other, with the same data, the same thread count and the
same input size (the shapes images, 128×128 by default):

1. **train**: ``detsdk.Engine.from_recipe`` on ``examples/quickstart/recipe.toml`` (Faster
   R-CNN R18-FPN, SGD, 12 epochs) and on ``examples/quickstart/rtmdet.toml`` (RTMDet-tiny,
   AdamW, 24 epochs of the same batch size: its steps cost about a third), then ``fit()``:
   wall time of the whole fit (training and its evaluations), and the final ``bbox_mAP`` on
   the shapes val split.
2. **predict**: each trained model as ``Engine.detector()`` and ``load_detector`` prepare it
   (the weights evaluation uses, eval mode, BatchNorms folded into their convolutions) on
   the val images, batch ``--batch`` at a time, already normalised and padded (the pipeline
   is not timed), after both trainings: ``--predict-rounds`` rounds in which the two sides
   take turns, each a warm-up pass and a timed pass; the median images per second of the
   rounds; post-processing (NMS) included.

Goals (issue #12): RTMDet's mAP >= Faster R-CNN's, its wall time <= Faster R-CNN's, its
predict images/s >= 3x. ``--quick`` is a smoke run (a few iterations, a few images) that
checks the script works; its figures mean nothing.

    python benchmarks/rtmdet_quickstart.py [--threads 2] [--quick] [--set train.epochs=6] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIDES = {
    "faster_rcnn": REPO / "examples" / "quickstart" / "recipe.toml",
    "rtmdet_tiny": REPO / "examples" / "quickstart" / "rtmdet.toml",
}
QUICK = ["train.epochs=1", "train.iters=3", "data.train.num_images=8", "data.val.num_images=4",
         "train.eval_interval=0", "data.num_workers=0"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both sides (default 2)")
    parser.add_argument("--batch", type=int, default=8, help="predict batch size (default 8)")
    parser.add_argument("--predict-rounds", type=int, default=5,
                        help="predict rounds, the sides taking turns (default 5)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for both sides, as `sdk run --set`")
    parser.add_argument("--quick", action="store_true", help="smoke run: a few iterations and images")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    return parser.parse_args(argv)


def train(recipe: Path, work_dir: Path, overrides: list[str]) -> tuple[object, float, float]:
    """``(engine, wall seconds of fit, final bbox_mAP)``."""
    from detsdk import Engine

    engine = Engine.from_recipe(
        str(recipe), overrides=[f'runtime.work_dir="{work_dir}"', "runtime.plot_samples=0", *overrides]
    )
    start = time.perf_counter()
    metrics = engine.fit()
    wall = time.perf_counter() - start
    return engine, wall, float(metrics.get("bbox_mAP", float("nan")))


def predict_rate(engine, batch: int, rounds: int) -> tuple[float, tuple[int, int]]:
    """Images per second of the evaluated model on the val images (normalised, padded), and the input size."""
    import torch

    from detsdk.data.loader import collate
    from detsdk.engine.build import build_pipeline_dataset

    dataset = build_pipeline_dataset(engine.config["data"]["val"], "data.val")
    samples = [dataset[i] for i in range(len(dataset))]
    batches = [collate(samples[i : i + batch]) for i in range(0, len(samples), batch)]
    model = engine.detector().model  # what load_detector and Engine.predict run: eval, BatchNorms folded
    device = next(model.parameters()).device

    def one_pass() -> None:
        for images, targets, _ in batches:
            model(images.to(device), image_sizes=[t["image_size"] for t in targets])

    with torch.inference_mode():
        one_pass()  # warm-up: allocator, kernels
        start = time.perf_counter()
        for _ in range(rounds):
            one_pass()
        seconds = time.perf_counter() - start
    return rounds * len(samples) / seconds, tuple(batches[0][0].shape[-2:])


def main(argv: list[str] | None = None) -> int:
    """Train and time both sides, print them side by side."""
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    overrides = (QUICK if args.quick else []) + args.set
    results, engines = {}, {}
    with tempfile.TemporaryDirectory(prefix="rtmdet_quickstart_") as scratch:
        for name, recipe in SIDES.items():
            print(f"training {name} ({recipe.relative_to(REPO)}) ...", file=sys.stderr, flush=True)
            engines[name], wall, bbox_map = train(recipe, Path(scratch) / name, overrides)
            results[name] = {"bbox_mAP": bbox_map, "train_wall_s": wall, "iterations": engines[name].iteration}
        # Predict after both trainings, the sides taking turns, so machine drift falls on both alike.
        rates: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(1 if args.quick else args.predict_rounds):
            for name, engine in engines.items():
                rate, size = predict_rate(engine, args.batch, 1)
                rates[name].append(rate)
                results[name]["input_hw"] = list(size)
        for name in engines:
            results[name]["predict_images_per_s"] = statistics.median(rates[name])
            results[name]["predict_rounds"] = rates[name]
    fr, rt = results["faster_rcnn"], results["rtmdet_tiny"]
    print(f"\nshapes quickstart, {args.threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}"
          f"{' (--quick: smoke run, figures mean nothing)' if args.quick else ''}; measured under whatever load the machine has")
    print(f"| detector | bbox_mAP | train wall (s) | iterations | predict images/s (input {fr['input_hw'][0]}x{fr['input_hw'][1]}) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, row in results.items():
        print(f"| {name} | {row['bbox_mAP']:.4f} | {row['train_wall_s']:.1f} | {row['iterations']} | "
              f"{row['predict_images_per_s']:.1f} |")
    for name, row in results.items():
        print(f"{name} predict rounds (images/s): {', '.join(f'{r:.1f}' for r in row['predict_rounds'])}")
    speedup = rt["predict_images_per_s"] / fr["predict_images_per_s"]
    print(f"\nmAP goal (rtmdet >= faster_rcnn): {'met' if rt['bbox_mAP'] >= fr['bbox_mAP'] else 'not met'}; "
          f"wall goal (rtmdet <= faster_rcnn): {'met' if rt['train_wall_s'] <= fr['train_wall_s'] else 'not met'} "
          f"({rt['train_wall_s'] / fr['train_wall_s']:.2f}x); "
          f"predict goal (>= 3x): {'met' if speedup >= 3 else 'not met'} ({speedup:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
