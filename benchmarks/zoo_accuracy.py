"""Accuracy parity: det-sdk against a plain torchvision training loop, same model, data, budget and start.

For each detector of ``examples/quickstart`` (``faster_rcnn``, ``mask_rcnn``, ``retinanet``,
``fcos``) and each seed, in one run:

1. torchvision's own detector class (``FasterRCNN``, ``MaskRCNN``, ``RetinaNet``, ``FCOS``) is
   built with the recipe's architecture (ResNet-18 FPN with BatchNorm, 64 channels, the
   recipe's anchors and heads), with random weights drawn from the seed, and its state dict
   is saved.
2. **sdk**: ``detsdk.Engine.from_recipe(example)`` with ``runtime.load_from`` = that file
   (det-sdk's torchvision interop) and ``runtime.seed`` = the seed, then ``fit()``: the
   recipe's epochs, batch size, SGD, warmup and step schedule, gradient clipping; evaluated by
   det-sdk's ``coco`` metric on the shapes val split.
3. **plain**: the same state dict in torchvision's model, trained by a loop in the style of
   torchvision's detection reference: ``CocoDetection`` + ``wrap_dataset_for_transforms_v2`` on
   the same shapes files, ``transforms.v2`` flip, ``DataLoader(shuffle=True)``, ``SGD`` and a
   ``LambdaLR`` with the recipe's warmup and steps, ``clip_grad_norm_`` when the recipe clips;
   evaluated with pycocotools' ``COCOeval`` on the same val annotation file.

The table gives mAP (bbox; segm too for Mask R-CNN) per run and the mean difference
plain - sdk over the seeds. Goal: plain is no more than 0.02 (2 points) above det-sdk.
Seeds change initial weights and batch order, which moves shapes mAP by a few points, so
use several seeds and compare means.

Run from the repository root (``--jobs`` runs that many trainings at once: use it on a
machine with many cores or a GPU)::

    python benchmarks/zoo_accuracy.py [--detectors faster_rcnn fcos] [--seeds 0 1] [--jobs 4]
        [--set train.epochs=6]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "quickstart"
RECIPES = {
    "faster_rcnn": EXAMPLES / "recipe.toml",
    "mask_rcnn": EXAMPLES / "mask_rcnn.toml",
    "retinanet": EXAMPLES / "retinanet.toml",
    "fcos": EXAMPLES / "fcos.toml",
}
TWO_STAGE = {"faster_rcnn", "mask_rcnn"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--jobs", type=int, default=1, help="trainings run at once (default 1)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for both sides, as `sdk run --set` (e.g. train.epochs=6)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    return parser.parse_args(argv)


# -- the torchvision side -----------------------------------------------------------------
def torchvision_detector(detector: str, config: dict, num_classes: int):
    """torchvision's detector with the architecture the resolved det-sdk recipe describes."""
    import torch
    from torch import nn
    from torchvision.models import resnet
    from torchvision.models.detection import FCOS, MaskRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.retinanet import RetinaNetHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    model_config = config["model"]
    channels = int(model_config["neck"]["out_channels"])
    size = int(config["data"]["train"].get("image_size", 128))
    body = getattr(resnet, f"resnet{model_config['backbone']['depth']}")(weights=None, norm_layer=nn.BatchNorm2d)
    layers = [1, 2, 3, 4] if detector in TWO_STAGE else [2, 3, 4]
    in_channels = [64 * body.layer1[0].expansion * 2 ** (i - 1) for i in layers]
    extra = LastLevelMaxPool() if detector in TWO_STAGE else LastLevelP6P7(channels, channels)
    backbone = BackboneWithFPN(body, {f"layer{i}": str(n) for n, i in enumerate(layers)}, in_channels, channels,
                               extra_blocks=extra)
    common = {"min_size": size, "max_size": size}  # no resize: the images are already the recipe's size
    if detector in TWO_STAGE:
        rpn, box = model_config["rpn_head"], model_config["box_head"]
        sizes = tuple(tuple(s) for s in rpn["anchor_sizes"])
        kwargs = dict(
            common,
            rpn_anchor_generator=AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes)),
            rpn_pre_nms_top_n_train=rpn["pre_nms_top_n_train"], rpn_post_nms_top_n_train=rpn["post_nms_top_n_train"],
            rpn_pre_nms_top_n_test=rpn["pre_nms_top_n_test"], rpn_post_nms_top_n_test=rpn["post_nms_top_n_test"],
            box_batch_size_per_image=box["batch_size_per_image"],
            box_head=TwoMLPHead(channels * 7 * 7, box["fc_channels"]),
            box_predictor=FastRCNNPredictor(box["fc_channels"], num_classes + 1),
        )
        if detector == "faster_rcnn":
            return FasterRCNN(backbone, **kwargs)
        mask = model_config["mask_head"]
        convs = [mask["conv_channels"]] * mask["num_convs"]
        return MaskRCNN(
            backbone, **kwargs,
            mask_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], 14, sampling_ratio=mask["sampling_ratio"]),
            mask_head=MaskRCNNHeads(channels, convs, 1),
            mask_predictor=MaskRCNNPredictor(convs[-1], convs[-1], num_classes + 1),
        )
    if detector == "retinanet":
        sizes = tuple(tuple(s) for s in model_config["head"]["anchor_sizes"])
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        head = RetinaNetHead(channels, anchors.num_anchors_per_location()[0], num_classes,
                             norm_layer=partial(nn.GroupNorm, 32))
        return RetinaNet(backbone, num_classes, anchor_generator=anchors, head=head, detections_per_img=100, **common)
    return FCOS(backbone, num_classes, **common)


def coco_eval(ann_file: str, results: list[dict], iou_type: str) -> float:
    """pycocotools' mAP@[.5:.95] of ``results`` against ``ann_file`` (0.0 when nothing was detected)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(ann_file)
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def collate_lists(batch: list) -> tuple:
    """torchvision reference's collate: a tuple of images and a tuple of targets."""
    return tuple(zip(*batch))


def train_plain(detector: str, config: dict, init: Path, seed: int, device: str) -> dict[str, float]:
    """torchvision's reference loop, as plain as it gets; returns bbox (and segm) mAP on val."""
    import numpy as np
    import torch
    from pycocotools import mask as mask_utils
    from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2
    from torchvision.transforms import v2

    from detsdk.builtin.data.shapes import ShapesDataset

    torch.manual_seed(seed)
    data, train = config["data"], config["train"]
    shapes = {k: v for k, v in data["train"].items() if k not in ("type", "pipeline", "split", "with_masks")}
    roots = {split: ShapesDataset(split=split, **shapes).root for split in ("train", "val")}
    keys = ["boxes", "labels", "image_id"] + (["masks"] if detector == "mask_rcnn" else [])

    def coco(split: str, transforms):
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it indexes
            dataset = CocoDetection(str(roots[split] / "images"), str(roots[split] / "annotations.json"),
                                    transforms=transforms)
        return wrap_dataset_for_transforms_v2(dataset, target_keys=keys)

    to_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    train_set = coco("train", v2.Compose([v2.ToImage(), v2.RandomHorizontalFlip(0.5), *to_float[1:]]))
    cat_ids = sorted(train_set.coco.getCatIds())
    # torchvision's two-stage models keep label 0 for background; RetinaNet and FCOS count from 0.
    first_label = 1 if detector in TWO_STAGE else 0
    label_of = torch.zeros(max(cat_ids) + 1, dtype=torch.int64)
    label_of[cat_ids] = torch.arange(len(cat_ids)) + first_label
    model = torchvision_detector(detector, config, len(cat_ids))
    model.load_state_dict(torch.load(init, weights_only=True))
    model.to(device).train()

    batch_size = int(data["batch_size"])
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=batch_size, shuffle=True, num_workers=int(data["num_workers"]),
        collate_fn=collate_lists, generator=torch.Generator().manual_seed(seed), drop_last=False,
    )
    optimizer_config = train["optimizer"]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=optimizer_config["lr"], momentum=optimizer_config["momentum"],
                                weight_decay=optimizer_config["weight_decay"])
    schedule = train["scheduler"]
    iters_per_epoch, epochs = len(loader), int(train["epochs"])

    def lr_factor(iteration: int) -> float:
        epoch = iteration // iters_per_epoch
        factor = schedule.get("gamma", 0.1) ** sum(epoch >= m for m in schedule["milestones"])
        warmup = int(schedule.get("warmup_iters", 0))
        if iteration < warmup:
            ratio = float(schedule.get("warmup_ratio", 0.001))
            factor *= 1 - (1 - ratio) * (1 - iteration / warmup)
        return factor

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    grad_clip = float(train.get("grad_clip", 0.0))
    for _ in range(epochs):
        for images, targets in loader:
            images = [image.to(device) for image in images]
            targets = [{k: (label_of[v] if k == "labels" else v).to(device) if torch.is_tensor(v) else v
                        for k, v in t.items()} for t in targets]
            loss = sum(model(images, targets).values())
            optimizer.zero_grad()
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            scheduler.step()

    model.eval()
    val_set = coco("val", v2.Compose(to_float))
    bbox_results, segm_results = [], []
    with torch.no_grad():
        for index in range(len(val_set)):
            image, target = val_set[index]
            output = model([image.to(device)])[0]
            boxes = output["boxes"].cpu().numpy()
            for k, (box, score, label) in enumerate(zip(boxes, output["scores"].tolist(), output["labels"].tolist())):
                entry = {"image_id": int(target["image_id"]), "category_id": cat_ids[label - first_label],
                         "score": score}
                bbox_results.append({**entry, "bbox": [float(box[0]), float(box[1]),
                                                       float(box[2] - box[0]), float(box[3] - box[1])]})
                if "masks" in output:
                    binary = (output["masks"][k, 0] > 0.5).cpu().numpy().astype(np.uint8)
                    rle = mask_utils.encode(np.asfortranarray(binary))
                    rle["counts"] = rle["counts"].decode("ascii")
                    segm_results.append({**entry, "segmentation": rle})
    ann_file = str(roots["val"] / "annotations.json")
    metrics = {"bbox_mAP": coco_eval(ann_file, bbox_results, "bbox")}
    if detector == "mask_rcnn":
        metrics["segm_mAP"] = coco_eval(ann_file, segm_results, "segm")
    return metrics


# -- one job: one detector, one seed, one side ----------------------------------------------
def run_job(detector: str, seed: int, side: str, overrides: list[str], threads: int, scratch: str) -> dict:
    """Train and evaluate one side; returns the metrics and the wall time."""
    import torch

    from detsdk import Engine
    from detsdk.recipe import load_recipe, with_defaults

    torch.set_num_threads(threads)
    os.environ.setdefault("DETSDK_LOAD_PLUGINS", "")
    work = Path(scratch) / f"{detector}-seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    init = work / "init.pth"
    overrides = [*overrides, f"runtime.seed={seed}", "runtime.plot_samples=0"]
    config = with_defaults(load_recipe(RECIPES[detector], overrides).data)
    started = time.perf_counter()
    if side == "sdk":
        engine = Engine.from_recipe(RECIPES[detector], overrides=[*overrides, f"runtime.load_from={json.dumps(str(init))}"],
                                    work_dir=work / "sdk")
        all_metrics = engine.fit()
        metrics = {k: all_metrics[k] for k in ("bbox_mAP", "segm_mAP") if k in all_metrics}
    else:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        metrics = train_plain(detector, config, init, seed, device)
    return {"detector": detector, "seed": seed, "side": side, **metrics, "seconds": time.perf_counter() - started}


def make_initial_weights(detector: str, seed: int, overrides: list[str], scratch: str) -> None:
    """torchvision's randomly initialised model for this seed, saved for both sides to start from."""
    import torch

    from detsdk.builtin.data.shapes import ShapesDataset
    from detsdk.recipe import load_recipe, with_defaults

    config = with_defaults(load_recipe(RECIPES[detector], overrides).data)
    shapes = {k: v for k, v in config["data"]["train"].items() if k not in ("type", "pipeline")}
    classes = ShapesDataset(**shapes).classes  # also writes the shapes files once, before the jobs start
    ShapesDataset(**{**shapes, "split": "val"})
    torch.manual_seed(seed)
    work = Path(scratch) / f"{detector}-seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision_detector(detector, config, len(classes)).state_dict(), work / "init.pth")


def report(results: list[dict], args: argparse.Namespace) -> None:
    """Print the per-run table and the mean differences."""
    import torch

    print(f"\ntorch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}, "
          f"seeds {args.seeds}, overrides {args.set or 'none'}")
    print("| detector | metric | det-sdk | plain torchvision | plain - det-sdk |")
    print("| --- | --- | ---: | ---: | ---: |")
    for detector in args.detectors:
        for metric in ("bbox_mAP", "segm_mAP"):
            pairs = []
            for seed in args.seeds:
                side = {r["side"]: r for r in results if r["detector"] == detector and r["seed"] == seed}
                if metric in side.get("sdk", {}):
                    pairs.append((side["sdk"][metric], side["plain"][metric]))
            if not pairs:
                continue
            sdk = statistics.mean(p[0] for p in pairs)
            plain = statistics.mean(p[1] for p in pairs)
            runs = " / ".join(f"{s:.3f}" for s, _ in pairs), " / ".join(f"{p:.3f}" for _, p in pairs)
            verdict = "met" if plain - sdk <= 0.02 else "NOT met"
            print(f"| {detector} | {metric} | {sdk:.3f} ({runs[0]}) | {plain:.3f} ({runs[1]}) | "
                  f"{plain - sdk:+.3f} ({verdict}) |")
    total = sum(r["seconds"] for r in results)
    print(f"\n{len(results)} trainings, {total / 60:.1f} min of training time in all (goal: plain - det-sdk <= 0.02)")


def main(argv: list[str] | None = None) -> int:
    """Run every (detector, seed, side) training and print the table."""
    args = parse_args(argv)
    sys.path.insert(0, str(REPO / "sdk"))
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with tempfile.TemporaryDirectory(prefix="zoo-accuracy-") as scratch:
        for detector in args.detectors:
            for seed in args.seeds:
                make_initial_weights(detector, seed, args.set, scratch)
        jobs = [(d, s, side) for d in args.detectors for s in args.seeds for side in ("sdk", "plain")]
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_job, d, s, side, args.set, threads, scratch) for d, s, side in jobs]
            results = []
            for future in as_completed(futures):  # each result shows (and is saved) as soon as it is in
                results.append(future.result())
                print(json.dumps(results[-1]), flush=True)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
