"""Engine overhead: det-sdk's training loop against a plain torchvision-style loop.

Both sides train the SAME model (one build from the recipe, two ``copy.deepcopy``
copies with identical initial weights), on the SAME ``PipelineDataset`` and
``collate``, with the same batch size, workers, optimizer, LR schedule, seed,
device and thread count, in one process:

- sdk:   ``detsdk.Engine.from_recipe(...)`` with the model injected, then ``fit()``
         (``train.iters`` set, no val/test split so nothing is evaluated,
         ``runtime.plot_samples = 0``, the recipe's ``log_interval``).
- plain: what torchvision's detection reference does, minus its logging::

      for images, targets, _ in loader:
          losses = model(images, targets)
          loss = sum(losses.values())
          optimizer.zero_grad(); loss.backward(); optimizer.step(); scheduler.step()

  with a ``torch.utils.data.DataLoader(shuffle=True, generator=seeded)``,
  ``torch.optim.SGD`` (or ``AdamW``) from the recipe's optimizer table, and the
  recipe's LR schedule stepped each iteration (torchvision steps its warmup the same way).

An iteration is timed from the end of one optimizer step to the end of the next,
so data loading and everything the loop does between steps counts on both
sides. The engine's timestamps come from a ``detsdk_after_train_iter`` hook;
the first ``--warmup`` iterations of every run (worker start-up, allocator
warm-up) are dropped. Sides alternate for ``--rounds`` rounds (plain first in
odd rounds, sdk first in even ones; the default of 4 lets each side go first
equally often, since a process's second run of the same model is not as fast as
its first) to spread machine noise; the report gives median seconds per
iteration, images/s, the ratio sdk / plain (goal: <= 1.02) and each round's
ratio, which machine drift between rounds does not move. Then (``--interleave N``,
default 30) one more run in which the loops take turns every iteration: a plugin's
``detsdk_after_train_iter`` runs one plain iteration (its own model copy, loader,
optimizer and schedule) after each ``Engine.fit`` iteration, and each side is timed
on its own iterations only, so a machine whose speed drifts within a minute slows
both alike. The report also gives the time det-sdk spends in its own code each
iteration (``OwnTime``).

Run from the repository root::

    python benchmarks/engine_overhead.py [--iters N --rounds R --recipe PATH --set k=v]

e.g. ``--set data.batch_size=4 --set model.backbone.depth=50 --threads 4``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import detsdk
from detsdk.data.loader import collate
from detsdk.engine import build
from detsdk.engine.device import resolve_device
from detsdk.engine.hooks import Hooks
from detsdk.engine.train_step import TrainStep
from detsdk.errors import DetSDKError, RecipeError
from detsdk.plugins import get_registry
from detsdk.recipe import Recipe, load_recipe, validate_recipe, with_defaults

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO / "examples" / "quickstart" / "recipe.toml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="recipe to build model and data from")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override, as `sdk run --set`"
    )
    parser.add_argument("--iters", type=int, default=30, help="timed iterations per side and round (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="iterations dropped at the start of every run (default 5)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds of plain + sdk, order alternating (default 4: each side first twice)")
    parser.add_argument("--interleave", type=int, default=30,
                        help="then one run where the loops take turns every iteration: timed iterations "
                             "per side (default 30; 0: skip)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both sides (default: all cores)")
    parser.add_argument("--device", default="", help="override runtime.device (auto, cpu, cuda, ...)")
    args = parser.parse_args(argv)
    if args.iters < 2 or args.warmup < 1 or args.rounds < 1:
        parser.error("need --iters >= 2, --warmup >= 1 and --rounds >= 1")
    return args


def available_cores() -> int:
    """Cores this process may run on (affinity-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def benchmark_recipe(args: argparse.Namespace) -> Recipe:
    """The validated recipe: user overrides, then iteration training with nothing but training in it."""
    overrides = [*args.set, f"train.iters={args.warmup + args.iters}", "runtime.plot_samples=0"]
    if args.device:
        overrides.append(f"runtime.device={args.device}")
    recipe = load_recipe(args.recipe, overrides)
    validate_recipe(recipe)
    for split in ("val", "test"):  # evaluation is not part of a training step
        recipe.data.get("data", {}).pop(split, None)
    if "train" not in recipe.data.get("data", {}):
        raise RecipeError(f"{args.recipe}: no data.train table to benchmark on")
    return recipe


def seed_everything(seed: int) -> None:
    """What ``Engine.fit`` seeds before training, so both sides start from the same RNG state."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timestamp means the step has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class IterationClock:
    """A det-sdk plugin that records ``time.perf_counter()`` after every training iteration."""

    def __init__(self):
        self.stamps: list[float] = []

    @detsdk.hookimpl
    def detsdk_after_train_iter(self, engine, iteration, losses):
        synchronize(engine.device)
        self.stamps.append(time.perf_counter())


class OwnTime:
    """Seconds det-sdk spends per iteration in its own code around the step: the ``after_iter`` hooks
    (log, progress bar, checkpoint, plugin events) and ``TrainStep.to_device`` (label check and move).

    It wraps the two methods for the sdk runs only; the figures need no second side to compare with,
    so machine drift between runs does not move them.
    """

    def __init__(self):
        self.hooks: list[float] = []
        self.to_device: list[float] = []

    def __enter__(self):
        self._call, self._to_device = Hooks.call, TrainStep.to_device
        call, to_device, own = self._call, self._to_device, self

        def timed_call(hooks, event, engine, *args):
            start = time.perf_counter()
            call(hooks, event, engine, *args)
            if event == "after_iter":
                own.hooks.append(time.perf_counter() - start)

        def timed_to_device(step, images, targets):
            start = time.perf_counter()
            moved = to_device(step, images, targets)
            own.to_device.append(time.perf_counter() - start)
            return moved

        Hooks.call, TrainStep.to_device = timed_call, timed_to_device
        return self

    def __exit__(self, *exc):
        Hooks.call, TrainStep.to_device = self._call, self._to_device


def steady_times(stamps: list[float], warmup: int) -> list[float]:
    """Seconds per iteration after the first ``warmup`` iterations (stamps are taken after each one)."""
    return [b - a for a, b in zip(stamps[warmup - 1 :], stamps[warmup:])]


def plain_optimizer(spec: dict, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``torch.optim`` directly, with the recipe optimizer's hyper-parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    kind = spec.get("type")
    if kind == "sgd":
        return torch.optim.SGD(
            params, lr=spec.get("lr", 0.02), momentum=spec.get("momentum", 0.9),
            weight_decay=spec.get("weight_decay", 1e-4), nesterov=bool(spec.get("nesterov", False)),
        )
    if kind == "adamw":
        betas = spec.get("betas", [0.9, 0.999])
        return torch.optim.AdamW(
            params, lr=spec.get("lr", 1e-4), betas=(float(betas[0]), float(betas[1])),
            weight_decay=spec.get("weight_decay", 0.05),
        )
    raise RecipeError(f"train.optimizer.type = {kind!r}: the plain loop knows only 'sgd' and 'adamw'")


class PlainLoop:
    """The torchvision-reference-style loop, one iteration per ``step()``::

        images, targets = next(loader); losses = model(images, targets); loss = sum(losses.values())
        optimizer.zero_grad(); loss.backward(); optimizer.step(); scheduler.step()
    """

    def __init__(self, model, dataset, config: dict, total_iters: int, device: torch.device):
        seed = int(config["runtime"]["seed"])
        seed_everything(seed)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=int(config["data"]["batch_size"]), shuffle=True,
            num_workers=int(config["data"]["num_workers"]), collate_fn=collate,
            generator=torch.Generator().manual_seed(seed), pin_memory=device.type == "cuda",
        )
        self.model, self.device = model, device
        self.optimizer = plain_optimizer(config["train"]["optimizer"], model)
        # Same LR trajectory as the engine (warmup changes the losses, hence proposals and NMS work).
        self.scheduler = build.build_scheduler(config["train"]["scheduler"], self.optimizer, total_iters,
                                               len(self.loader))
        self.batches = iter(())
        model.train()

    def step(self) -> None:
        """One iteration, the next batch included (a new epoch when the loader runs out)."""
        try:
            images, targets, _ = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            images, targets, _ = next(self.batches)
        images = images.to(self.device, non_blocking=True)
        targets = [{k: v.to(self.device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
        losses = self.model(images, targets)
        loss = sum(losses.values())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        synchronize(self.device)


def run_plain(model, dataset, config: dict, total_iters: int, device: torch.device) -> list[float]:
    """Train ``total_iters`` iterations with a torchvision-reference-style loop; a timestamp after each."""
    loop = PlainLoop(model, dataset, config, total_iters, device)
    stamps: list[float] = []
    while len(stamps) < total_iters:
        loop.step()
        stamps.append(time.perf_counter())
    return stamps


class InterleavedClock:
    """A det-sdk plugin that, after each ``Engine.fit`` iteration, runs one plain iteration.

    Each side's time is its own: an sdk iteration from the end of the plain one before
    it to its ``after_train_iter``, a plain one from its start to its end. The two loops
    take turns every iteration, so the machine's drift falls on both alike.
    """

    def __init__(self):
        self.plain: PlainLoop | None = None
        self.sdk_times: list[float] = []
        self.plain_times: list[float] = []
        self.resumed_at: float | None = None

    @detsdk.hookimpl
    def detsdk_after_train_iter(self, engine, iteration, losses):
        if self.plain is None:
            return
        synchronize(engine.device)
        start = time.perf_counter()
        if self.resumed_at is not None:
            self.sdk_times.append(start - self.resumed_at)
        self.plain.step()
        self.resumed_at = time.perf_counter()
        self.plain_times.append(self.resumed_at - start)


def run_sdk(model, classes: list[str], data: dict, clock: IterationClock, work_dir: Path) -> list[float]:
    """Train with ``Engine.fit()`` on an injected copy of the model; the clock plugin stamps each iteration."""
    engine = detsdk.Engine.from_recipe(data, work_dir=work_dir)
    engine.model = model.to(engine.device)
    engine.classes = list(classes)
    clock.stamps = []
    engine.fit()
    return list(clock.stamps)


def run_interleaved(initial_model, dataset, classes, data: dict, config: dict, args, device: torch.device,
                    clock: InterleavedClock) -> dict[str, list[float]]:
    """``Engine.fit`` and the plain loop taking turns each iteration (two model copies, two loaders);
    each side's seconds per iteration after ``--warmup``."""
    total = args.warmup + args.interleave
    sdk_model, plain_model = (copy.deepcopy(initial_model).to(device) for _ in range(2))
    gc.collect()
    clock.plain = PlainLoop(plain_model, dataset, config, total, device)
    clock.sdk_times, clock.plain_times, clock.resumed_at = [], [], None
    interleaved_data = {**data, "train": {**data.get("train", {}), "iters": total}}
    with tempfile.TemporaryDirectory(prefix="engine-overhead-interleaved-") as scratch:
        try:
            run_sdk(sdk_model, classes, interleaved_data, IterationClock(), Path(scratch))
        finally:
            clock.plain = None
    # sdk_times[i] is sdk iteration i + 2 (the first has no plain iteration before it)
    return {"plain": clock.plain_times[args.warmup:], "sdk": clock.sdk_times[args.warmup - 1:]}


def describe_device(device: torch.device) -> str:
    """A one-line name for the device the benchmark ran on."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu ({name}, {available_cores()} cores available)"


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the report; returns the exit code."""
    args = parse_args(argv)
    threads = args.threads or available_cores()
    torch.set_num_threads(threads)

    recipe = benchmark_recipe(args)
    data = recipe.data
    config = with_defaults(data)
    device = resolve_device(config["runtime"]["device"])
    batch_size = int(config["data"]["batch_size"])
    total_iters = args.warmup + args.iters

    # One model, built as the engine would build it; every run trains a fresh copy of it.
    seed_everything(int(config["runtime"]["seed"]))
    dataset = build.build_pipeline_dataset(config["data"]["train"], "data.train")
    classes = list(dataset.dataset.classes)
    num_classes = build.resolve_num_classes(recipe, classes, f"data.train ({config['data']['train']['type']})")
    initial_model = build.build_model(config["model"], num_classes)
    image_shape = tuple(collate([dataset[0]])[0].shape[1:])

    clock = IterationClock()
    get_registry().add_plugin("engine-overhead-clock", "0", lambda: clock)
    interleaved_clock = InterleavedClock()
    get_registry().add_plugin("engine-overhead-interleaved", "0", lambda: interleaved_clock)

    times: dict[str, list[float]] = {"plain": [], "sdk": []}
    own_time = OwnTime()
    round_medians: dict[str, list[float]] = {"plain": [], "sdk": []}
    with tempfile.TemporaryDirectory(prefix="engine-overhead-") as scratch:
        for round_index in range(args.rounds):
            order = ("plain", "sdk") if round_index % 2 == 0 else ("sdk", "plain")
            for side in order:
                model = copy.deepcopy(initial_model).to(device)
                gc.collect()
                if side == "plain":
                    stamps = run_plain(model, dataset, config, total_iters, device)
                else:
                    with own_time:
                        stamps = run_sdk(model, classes, data, clock, Path(scratch) / f"round{round_index}")
                if len(stamps) != total_iters:
                    raise RuntimeError(f"{side}: expected {total_iters} iterations, timed {len(stamps)}")
                measured = steady_times(stamps, args.warmup)
                times[side].extend(measured)
                round_medians[side].append(statistics.median(measured))
                print(f"round {round_index + 1} {side:5s}: median {round_medians[side][-1]:.4f} s/iter "
                      f"over {len(measured)} iterations", flush=True)
                del model

    interleaved = None
    if args.interleave:
        interleaved = run_interleaved(initial_model, dataset, classes, data, config, args, device, interleaved_clock)

    plain, sdk = statistics.median(times["plain"]), statistics.median(times["sdk"])
    ratio = sdk / plain
    command = "python benchmarks/engine_overhead.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    try:
        recipe_name = Path(args.recipe).resolve().relative_to(REPO)
    except ValueError:
        recipe_name = Path(args.recipe)
    print()
    print(f"command: `{command}`")
    print(f"torch {torch.__version__}, torchvision {_torchvision_version()}, det-sdk {detsdk.__version__}, "
          f"python {platform.python_version()}")
    print(f"device: {describe_device(device)}; torch threads: {threads}")
    rounds = f"{args.rounds} round{'s' if args.rounds != 1 else ''}"
    print(f"recipe: {recipe_name} ({config['model']['type']}, {config['data']['train']['type']}); "
          f"batch {batch_size}, images {image_shape[1]}x{image_shape[2]}, num_workers {config['data']['num_workers']}; "
          f"{rounds} x {args.iters} timed iterations per side after {args.warmup} warm-up")
    print()
    print("| loop | median s/iter | mean s/iter | images/s | per-round medians (s/iter) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for side, label in (("plain", "plain PyTorch (torchvision reference style)"), ("sdk", "det-sdk `Engine.fit`")):
        median = statistics.median(times[side])
        print(f"| {label} | {median:.4f} | {statistics.fmean(times[side]):.4f} | {batch_size / median:.1f} | "
              f"{', '.join(f'{m:.4f}' for m in round_medians[side])} |")
    mean_ratio = statistics.fmean(times["sdk"]) / statistics.fmean(times["plain"])
    print(f"| **ratio sdk / plain** | **{ratio:.3f}** | {mean_ratio:.3f} | | "
          f"goal <= 1.02: {'met' if ratio <= 1.02 else 'NOT met'} |")
    if interleaved is not None:
        plain_i, sdk_i = (statistics.median(interleaved[side]) for side in ("plain", "sdk"))
        print(f"| interleaved, every iteration ({len(interleaved['sdk'])} each): plain | {plain_i:.4f} | "
              f"{statistics.fmean(interleaved['plain']):.4f} | {batch_size / plain_i:.1f} | |")
        print(f"| interleaved: det-sdk | {sdk_i:.4f} | {statistics.fmean(interleaved['sdk']):.4f} | "
              f"{batch_size / sdk_i:.1f} | |")
        print(f"| **interleaved ratio sdk / plain** | **{sdk_i / plain_i:.3f}** | "
              f"{statistics.fmean(interleaved['sdk']) / statistics.fmean(interleaved['plain']):.3f} | | "
              f"goal <= 1.02: {'met' if sdk_i / plain_i <= 1.02 else 'NOT met'} |")
    paired = [s / p for p, s in zip(round_medians["plain"], round_medians["sdk"])]
    print(f"\nper-round ratios sdk / plain: {', '.join(f'{r:.3f}' for r in paired)} "
          f"(median {statistics.median(paired):.3f})")
    hooks_ms, move_ms = statistics.median(own_time.hooks) * 1e3, statistics.median(own_time.to_device) * 1e3
    print(f"det-sdk's own work per iteration (medians): after_iter hooks {hooks_ms:.2f} ms, label check and "
          f"batch move {move_ms:.2f} ms: {(hooks_ms + move_ms) / 1e3 / sdk:.2%} of its s/iter")
    runs = round_medians["plain"] + round_medians["sdk"]
    if max(runs) / min(runs) > 1.10:
        # With every core busy, OpenMP threads of a loaded machine stall each other: whole runs slow down.
        print(f"\nwarning: run medians differ by {max(runs) / min(runs) - 1:.0%}; the machine was busy. "
              "Rerun, use more --rounds, or fewer --threads than cores.")
    return 0


def _torchvision_version() -> str:
    try:
        import torchvision
    except ImportError:
        return "not installed"
    return torchvision.__version__


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DetSDKError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
