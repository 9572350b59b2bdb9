"""DDP on the CPU: 2 processes (gloo) against 1, same per-process batch, same model and data.

Both sides are ``torchrun --standalone`` runs of ``Engine.fit()`` on the same
recipe (default: the quickstart's Faster R-CNN R18-FPN on 128x128 shapes,
batch 2 per process, no workers, no evaluation), one thread per process:

- 1 process: ``--nproc-per-node 1`` (no process group, no DDP: the plain engine);
- 2 processes: ``--nproc-per-node 2``: each rank trains on its half of every
  epoch and DDP all-reduces the gradients over gloo after each backward.

With the same batch per process, perfect scaling keeps the step time and
doubles the images/s; the ratio of step times (2 processes / 1) measures what
distribution costs: gradient all-reduce not hidden behind the backward, and
ranks waiting for each other. Goal: <= 1.15. An iteration is timed from one
``detsdk_after_train_iter`` to the next on rank 0 (after all-reduce every rank
ends an iteration together); the first ``--warmup`` are dropped. Sides
alternate over ``--rounds``.

Run from the repository root, on an otherwise idle machine with at least 2 cores::

    python benchmarks/ddp_cpu.py [--iters N --warmup W --rounds R --recipe PATH --set k=v]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO / "examples" / "quickstart" / "recipe.toml"
DEFAULT_SET = ["data.batch_size=2", "data.num_workers=0", "data.train.image_size=128", "data.train.num_images=200"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="recipe to train (default: the quickstart)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"recipe override, as `sdk run --set` (applied after {' '.join(DEFAULT_SET)})")
    parser.add_argument("--iters", type=int, default=30, help="timed iterations per run (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="iterations dropped at the start of a run (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 1 + 2 processes, order alternating (default 2)")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)  # set when torchrun starts a rank
    args = parser.parse_args(argv)
    if args.iters < 2 or args.warmup < 1 or args.rounds < 1:
        parser.error("need --iters >= 2, --warmup >= 1 and --rounds >= 1")
    return args


def worker(args: argparse.Namespace) -> None:
    """One rank: train with ``Engine.fit()`` and write rank 0's iteration timestamps to ``args.worker``."""
    import torch

    import detsdk
    from detsdk.engine import distributed
    from detsdk.plugins import get_registry

    torch.set_num_threads(1)
    stamps: list[float] = []

    class IterationClock:
        @detsdk.hookimpl
        def detsdk_after_train_iter(self, engine, iteration, losses):
            stamps.append(time.perf_counter())

    get_registry().add_plugin("ddp-benchmark-clock", "0", IterationClock)
    overrides = [*DEFAULT_SET, *args.set, f"train.iters={args.warmup + args.iters}", "train.log_interval=1000",
                 "runtime.plot_samples=0"]
    engine = detsdk.Engine.from_recipe(_without_eval(args.recipe, overrides), device="cpu",
                                       work_dir=Path(args.worker).with_suffix(".run"))
    engine.fit()
    if distributed.is_main_process():
        Path(args.worker).write_text(json.dumps({"stamps": stamps, "world_size": distributed.get_world_size()}))
    distributed.destroy()


def _without_eval(recipe_path: str, overrides: list[str]) -> dict:
    """The recipe with overrides, minus data.val and data.test: only training steps are timed."""
    from detsdk.recipe import load_recipe

    recipe = load_recipe(recipe_path, overrides)
    for split in ("val", "test"):
        recipe.data.get("data", {}).pop(split, None)
    return recipe.data


def run_side(args: argparse.Namespace, nproc: int, scratch: Path, name: str) -> list[float]:
    """Start ``torchrun --nproc-per-node nproc`` on this script; returns rank 0's seconds per iteration."""
    out = scratch / f"{name}.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone",
               __file__, "--worker", str(out), "--recipe", args.recipe, "--iters", str(args.iters),
               "--warmup", str(args.warmup), *(f"--set={s}" for s in args.set)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "DETSDK_LOAD_PLUGINS": os.environ.get("DETSDK_LOAD_PLUGINS", "")}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO)
    if completed.returncode != 0:
        raise SystemExit(f"{nproc} process(es) failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    stamps = json.loads(out.read_text())["stamps"]
    return [b - a for a, b in zip(stamps[args.warmup - 1 :], stamps[args.warmup :])]


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the report."""
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    times: dict[int, list[float]] = {1: [], 2: []}
    medians: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="ddp-cpu-") as scratch:
        for round_index in range(args.rounds):
            for nproc in ((1, 2) if round_index % 2 == 0 else (2, 1)):
                measured = run_side(args, nproc, Path(scratch), f"round{round_index}-n{nproc}")
                times[nproc].extend(measured)
                medians[nproc].append(statistics.median(measured))
                print(f"round {round_index + 1}, {nproc} process{'es' if nproc > 1 else ''}: "
                      f"median {medians[nproc][-1]:.4f} s/iter over {len(measured)} iterations", flush=True)
    batch = next((int(s.split("=", 1)[1]) for s in reversed([*DEFAULT_SET, *args.set])
                  if s.startswith("data.batch_size=")), 2)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    ratio = two / one
    command = "python benchmarks/ddp_cpu.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    import torch

    print()
    print(f"command: `{command}`")
    print(f"torch {torch.__version__}, python {platform.python_version()}, {os.cpu_count()} CPU cores, "
          f"1 thread per process, gloo; recipe {Path(args.recipe).name} with {' '.join(DEFAULT_SET + args.set)}; "
          f"{args.rounds} rounds x {args.iters} timed iterations after {args.warmup} warm-up")
    print()
    print("| processes | batch / process | median s/iter | mean s/iter | images/s (all processes) | per-round medians |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for nproc, median in ((1, one), (2, two)):
        print(f"| {nproc} | {batch} | {median:.4f} | {statistics.fmean(times[nproc]):.4f} | "
              f"{nproc * batch / median:.1f} | {', '.join(f'{m:.4f}' for m in medians[nproc])} |")
    print(f"| **ratio 2 / 1** | | **{ratio:.3f}** | {statistics.fmean(times[2]) / statistics.fmean(times[1]):.3f} | "
          f"{2 / ratio:.2f}x | goal <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'} |")
    if (os.cpu_count() or 1) < 2:
        print("\nwarning: fewer than 2 cores: the 2 processes share one core and the ratio means nothing.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
