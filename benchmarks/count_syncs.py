"""Host syncs in one training step: det-sdk's detectors against torchvision's reference models, on the CPU.

A host sync is an op whose output the host must wait for on a GPU: its shape depends
on the data (``nonzero``, ``masked_select``, boolean-mask indexing, ``unique``,
``repeat_interleave`` with tensor repeats, ``nms``) or it returns a Python value
(``item`` / ``_local_scalar_dense``, ``tolist``, ``is_nonzero``, ``equal``). One
training step (forward, loss read-out, backward, optimizer step) runs under a
``TorchDispatchMode`` that counts every aten/torchvision op and those that sync
(``Tensor.tolist`` is counted by a wrapper: on the CPU it does not dispatch).

Both sides get the same random images (``--size`` square, already resized) and boxes:

- det-sdk: the model table of the shipped COCO recipe (``sdk/detsdk/recipes/_base/models``,
  ``pretrained`` dropped), stepped by det-sdk's ``TrainStep``;
- torchvision: ``fasterrcnn_resnet50_fpn``, ``maskrcnn_resnet50_fpn``, ``retinanet_resnet50_fpn``,
  ``fcos_resnet50_fpn`` (``weights=None``, ``min_size = max_size = --size`` so its transform does not
  resize), stepped as its detection reference does (``sum`` of the losses, ``.item()`` and
  ``math.isfinite`` on it, ``zero_grad``, ``backward``, ``step``).

Goal (issue #13): det-sdk at most 5 syncs per step, the same at batch 8 as at batch 2.

    python benchmarks/count_syncs.py [--detectors faster_rcnn,fcos --batches 2,8 --size 256 --where]
"""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
import traceback
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
try:
    import detsdk  # noqa: F401
except ImportError:  # a checkout that was not pip-installed
    sys.path.insert(0, str(REPO / "sdk"))

NUM_CLASSES = 80
DETECTORS = {  # det-sdk model table file -> torchvision constructor
    "faster_rcnn": ("faster_rcnn_r50_fpn.toml", "fasterrcnn_resnet50_fpn"),
    "mask_rcnn": ("mask_rcnn_r50_fpn.toml", "maskrcnn_resnet50_fpn"),
    "retinanet": ("retinanet_r50_fpn.toml", "retinanet_resnet50_fpn"),
    "fcos": ("fcos_r50_fpn.toml", "fcos_resnet50_fpn"),
}
# Ops whose result the host needs before it can go on (always, whatever their arguments).
SYNC_OPS = {
    "aten::nonzero", "aten::_local_scalar_dense", "aten::masked_select", "aten::_unique", "aten::_unique2",
    "aten::unique_dim", "aten::unique_consecutive", "aten::unique_dim_consecutive", "aten::is_nonzero",
    "aten::equal", "aten::bincount", "aten::histc", "torchvision::nms", "aten::allclose", "aten::argwhere",
}


def is_sync(func, args, kwargs) -> bool:
    """Whether ``func(*args, **kwargs)`` forces a host sync on a GPU."""
    name = func._schema.name
    if name in SYNC_OPS:
        return True
    if name in ("aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"):
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return any(torch.is_tensor(i) and i.dtype == torch.bool for i in indices)
    if name == "aten::repeat_interleave":
        return torch.is_tensor(args[0]) and args[0].dtype != torch.bool and kwargs.get("output_size") is None and (
            len(args) < 2 or torch.is_tensor(args[1]))
    return False


def where_from() -> str:
    """The innermost caller in det-sdk or torchvision (not torch itself), as ``file:line``."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        path = frame.filename.replace("\\", "/")
        if ("/detsdk/" in path or "/torchvision/" in path) and "count_syncs" not in path:
            return f"{path.split('/site-packages/')[-1].split('/sdk/')[-1]}:{frame.lineno}"
    return "?"


class SyncCounter(TorchDispatchMode):
    """Counts every op, and the host-syncing ones by op and by caller."""

    def __init__(self, where: bool = False):
        super().__init__()
        self.ops = 0
        self.syncs: Counter = Counter()
        self.places: Counter = Counter()
        self.where = where

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops += 1
        if is_sync(func, args, kwargs):
            self.count(func._schema.name.split("::")[-1])
        return func(*args, **kwargs)

    def count(self, name: str) -> None:
        """Record one sync of kind ``name`` (and its caller with ``--where``)."""
        self.syncs[name] += 1
        if self.where:
            self.places[f"{name} at {where_from()}"] += 1

    def __enter__(self):
        original = torch.Tensor.tolist
        counter = self

        def counted_tolist(tensor):
            counter.count("tolist")
            return original(tensor)

        self._original_tolist = original
        torch.Tensor.tolist = counted_tolist
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._original_tolist
        return super().__exit__(*exc)


def random_batch(batch: int, size: int, masks: bool, seed: int) -> tuple[torch.Tensor, list[dict]]:
    """``batch`` random images with 3-6 random boxes each (0-based labels; image 0 has one crowd box)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=generator)
    targets = []
    for index in range(batch):
        count = 3 + index % 4
        xy = torch.rand(count, 2, generator=generator) * size * 0.6
        wh = 16 + torch.rand(count, 2, generator=generator) * size * 0.4
        boxes = torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)
        target = {"boxes": boxes, "labels": torch.randint(0, NUM_CLASSES, (count,), generator=generator),
                  "iscrowd": torch.zeros(count, dtype=torch.bool)}
        if index == 0:
            target["iscrowd"][-1] = True
        if masks:
            grid = torch.arange(size, dtype=torch.float32)
            inside_x = (grid[None] >= boxes[:, None, 0]) & (grid[None] < boxes[:, None, 2])
            inside_y = (grid[None] >= boxes[:, None, 1]) & (grid[None] < boxes[:, None, 3])
            target["masks"] = (inside_y[:, :, None] & inside_x[:, None, :]).to(torch.uint8)
        targets.append(target)
    return images, targets


def sdk_model(detector: str) -> torch.nn.Module:
    """det-sdk's detector from the shipped COCO model table (random weights)."""
    from detsdk.engine.build import build_model

    models = REPO / "sdk" / "detsdk" / "recipes" / "_base" / "models"
    spec = tomllib.loads((models / DETECTORS[detector][0]).read_text())["model"]
    if "base" in tomllib.loads((models / DETECTORS[detector][0]).read_text()):  # mask_rcnn extends faster_rcnn
        base = tomllib.loads((models / "faster_rcnn_r50_fpn.toml").read_text())["model"]
        spec = {**base, **spec}
    spec["backbone"] = {k: v for k, v in spec["backbone"].items() if k != "pretrained"}
    return build_model(spec, NUM_CLASSES, for_inference=True)


def sdk_step(detector: str, batch: int, size: int, counter: SyncCounter) -> None:
    """One det-sdk ``TrainStep`` iteration under ``counter``."""
    from detsdk.engine.train_step import TrainStep

    model = sdk_model(detector).train()
    if hasattr(model, "rpn"):
        model.rpn.nms_per_image = False  # count the CUDA path: on the CPU the RPN runs NMS per image
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    step = TrainStep(model, optimizer, scheduler, torch.device("cpu"))
    batches = [random_batch(batch, size, detector == "mask_rcnn", seed=batch)]
    with counter:
        losses = step(batches, iteration=1, epoch=1)
        dict(losses)  # the engine reads the losses once per log interval; counted here as if every step


def torchvision_step(detector: str, batch: int, size: int, counter: SyncCounter) -> None:
    """One step of torchvision's detection reference loop under ``counter``."""
    import torchvision.models.detection as detection

    model = getattr(detection, DETECTORS[detector][1])(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1, min_size=size, max_size=size
    ).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    images, targets = random_batch(batch, size, detector == "mask_rcnn", seed=batch)
    # The reference's dataset drops crowd boxes; its labels are 1-based.
    targets = [{k: v[~t["iscrowd"]] for k, v in t.items() if k != "iscrowd"} for t in targets]
    for target in targets:
        target["labels"] = target["labels"] + 1
    with counter:
        loss_dict = model(list(images), targets)
        losses = sum(loss_dict.values())
        if not math.isfinite(losses.item()):
            raise RuntimeError("non-finite loss")
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated (default: all four)")
    parser.add_argument("--batches", default="2,8", help="comma-separated batch sizes (default 2,8)")
    parser.add_argument("--size", type=int, default=256, help="square image side in pixels (default 256)")
    parser.add_argument("--sides", default="sdk,torchvision", help="sdk, torchvision or both (default both)")
    parser.add_argument("--where", action="store_true", help="also list where det-sdk's syncs come from")
    args = parser.parse_args(argv)
    args.detectors = [d for d in args.detectors.split(",") if d]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.sides = [s for s in args.sides.split(",") if s]
    unknown = [d for d in args.detectors if d not in DETECTORS]
    if unknown:
        parser.error(f"unknown detector {', '.join(unknown)}; choose from {', '.join(DETECTORS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Count each side's ops and syncs per detector and batch; print one table."""
    args = parse_args(argv)
    torch.manual_seed(0)
    rows = []
    for detector in args.detectors:
        for batch in args.batches:
            row = {"detector": detector, "batch": batch}
            for side in args.sides:
                counter = SyncCounter(where=args.where and side == "sdk")
                (sdk_step if side == "sdk" else torchvision_step)(detector, batch, args.size, counter)
                row[side] = counter
                kinds = ", ".join(f"{k} {v}" for k, v in counter.syncs.most_common())
                print(f"{detector} batch {batch} {side}: {counter.ops} ops, {sum(counter.syncs.values())} syncs "
                      f"({kinds or 'none'})", flush=True)
                for place, count in counter.places.most_common():
                    print(f"    {count:4d}  {place}")
            rows.append(row)
    print()
    print(f"command: `python benchmarks/count_syncs.py {' '.join(sys.argv[1:])}`".replace(" `", " `", 1))
    print(f"torch {torch.__version__}, {args.size}x{args.size} images; goal: det-sdk <= 5 syncs, same at every batch")
    print()
    header = " | ".join(f"{side} ops | {side} syncs" for side in args.sides)
    print(f"| detector | batch | {header} |")
    print("| --- | ---: |" + " ---: | ---: |" * len(args.sides))
    for row in rows:
        cells = " | ".join(f"{row[s].ops} | {sum(row[s].syncs.values())}" for s in args.sides)
        print(f"| {row['detector']} | {row['batch']} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
