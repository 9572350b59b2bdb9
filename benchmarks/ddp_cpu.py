"""DDP on the CPU: 2 processes (gloo) against 1, same per-process batch, same model and data.

Both sides are ``torchrun --standalone`` runs of ``Engine.fit()`` on the same
recipe (default: the quickstart's Faster R-CNN R18-FPN on 256x256 shapes,
batch 2 per process, no workers, no evaluation), one thread per process:

- 1 process: ``--nproc-per-node 1`` (no process group, no DDP: the plain engine);
- 2 processes: ``--nproc-per-node 2``: each rank trains on its half of every
  epoch and DDP all-reduces the gradients over gloo after each backward;
- for reference, 2 independent 1-process runs at the same time (no DDP): what
  two processes cost each other on this machine (cores, memory bandwidth, caches).

With the same batch per process, perfect scaling keeps the step time and
doubles the images/s; the ratio of step times (2 processes / 1) measures what
distribution costs: gradient all-reduce not hidden behind the backward, and
ranks waiting for each other, on top of the machine's own sharing costs (the
reference row). Goal: <= 1.15. Besides wall time, the report gives rank 0's
CPU time per iteration (all its threads, gloo's included). An iteration is timed from one
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
DEFAULT_SET = ["data.batch_size=2", "data.num_workers=0", "data.train.image_size=256", "data.train.num_images=200"]


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
    cpu_stamps: list[float] = []

    class IterationClock:
        @detsdk.hookimpl
        def detsdk_after_train_iter(self, engine, iteration, losses):
            stamps.append(time.perf_counter())
            cpu_stamps.append(time.process_time())  # every thread of this process, gloo's included

    get_registry().add_plugin("ddp-benchmark-clock", "0", IterationClock)
    overrides = [*DEFAULT_SET, *args.set, f"train.iters={args.warmup + args.iters}", "train.log_interval=1000",
                 "runtime.plot_samples=0"]
    engine = detsdk.Engine.from_recipe(_without_eval(args.recipe, overrides), device="cpu",
                                       work_dir=Path(args.worker).with_suffix(".run"))
    engine.fit()
    if distributed.is_main_process():
        Path(args.worker).write_text(json.dumps({"stamps": stamps, "cpu_stamps": cpu_stamps}))
    distributed.destroy()


def _without_eval(recipe_path: str, overrides: list[str]) -> dict:
    """The recipe with overrides, minus data.val and data.test: only training steps are timed."""
    from detsdk.recipe import load_recipe

    recipe = load_recipe(recipe_path, overrides)
    for split in ("val", "test"):
        recipe.data.get("data", {}).pop(split, None)
    return recipe.data


def run_side(args: argparse.Namespace, side: str, scratch: Path, name: str) -> tuple[list[float], list[float]]:
    """Run one side; rank 0's wall and CPU seconds per iteration.

    ``"1"``/``"2"``: ``torchrun --nproc-per-node 1`` / ``2`` on this script.
    ``"2 independent"``: two ``--nproc-per-node 1`` runs at the same time, no
    DDP between them: what sharing the machine alone costs (memory, caches).
    """
    nproc, copies = (2, 1) if side == "2" else (1, 2 if side == "2 independent" else 1)
    outs = [scratch / f"{name}-{copy}.json" for copy in range(copies)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "DETSDK_LOAD_PLUGINS": os.environ.get("DETSDK_LOAD_PLUGINS", "")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone", __file__,
             "--worker", str(out), "--recipe", args.recipe, "--iters", str(args.iters), "--warmup", str(args.warmup),
             *(f"--set={s}" for s in args.set)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment, cwd=REPO,
        )
        for out in outs
    ]
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"side {side!r} failed (exit {process.returncode}):\n{stderr[-3000:]}")
    result = json.loads(outs[0].read_text())
    return tuple([b - a for a, b in zip(stamps[args.warmup - 1 :], stamps[args.warmup :])]
                 for stamps in (result["stamps"], result["cpu_stamps"]))


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the report."""
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    sides = ("1", "2", "2 independent")
    times: dict[str, list[float]] = {side: [] for side in sides}
    cpu_times: dict[str, list[float]] = {side: [] for side in sides}
    medians: dict[str, list[float]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="ddp-cpu-") as scratch:
        for round_index in range(args.rounds):
            for side in (sides if round_index % 2 == 0 else sides[::-1]):
                measured, cpu = run_side(args, side, Path(scratch), f"round{round_index}-{side.replace(' ', '-')}")
                times[side].extend(measured)
                cpu_times[side].extend(cpu)
                medians[side].append(statistics.median(measured))
                print(f"round {round_index + 1}, {side} process(es): median {medians[side][-1]:.4f} s/iter "
                      f"over {len(measured)} iterations", flush=True)
    batch = next((int(s.split("=", 1)[1]) for s in reversed([*DEFAULT_SET, *args.set])
                  if s.startswith("data.batch_size=")), 2)
    one, two = statistics.median(times["1"]), statistics.median(times["2"])
    ratio = two / one
    command = "python benchmarks/ddp_cpu.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    import torch

    print()
    print(f"command: `{command}`")
    print(f"torch {torch.__version__}, python {platform.python_version()}, {os.cpu_count()} CPU cores, "
          f"1 thread per process, gloo; recipe {Path(args.recipe).name} with {' '.join(DEFAULT_SET + args.set)}; "
          f"{args.rounds} rounds x {args.iters} timed iterations after {args.warmup} warm-up")
    print()
    print("| processes | batch / process | median s/iter | mean s/iter | images/s (all processes) | "
          "CPU s/iter (rank 0) | per-round medians |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    labels = {"1": "1", "2": "2, DDP (gloo)", "2 independent": "2 independent runs, no DDP (reference)"}
    for side in sides:
        median = statistics.median(times[side])
        print(f"| {labels[side]} | {batch} | {median:.4f} | {statistics.fmean(times[side]):.4f} | "
              f"{(1 if side == '1' else 2) * batch / median:.1f} | {statistics.median(cpu_times[side]):.4f} | "
              f"{', '.join(f'{m:.4f}' for m in medians[side])} |")
    independent = statistics.median(times["2 independent"])
    print(f"| **ratio DDP 2 / 1** | | **{ratio:.3f}** | {statistics.fmean(times['2']) / statistics.fmean(times['1']):.3f} "
          f"| {2 / ratio:.2f}x | {statistics.median(cpu_times['2']) / statistics.median(cpu_times['1']):.3f} | "
          f"goal <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'} |")
    print(f"| ratio DDP 2 / 2 independent | | {two / independent:.3f} | | | | what the gradient all-reduce costs |")
    # CPU time counts a rank's work (compute plus gloo's threads) and is less sensitive to other load than wall time.
    print("\nCPU s/iter: rank 0's process time (all threads) per iteration. '2 independent' shows what two "
          "processes cost each other on this machine without any communication; wall times need an idle machine.")
    if (os.cpu_count() or 1) < 2:
        print("\nwarning: fewer than 2 cores: the 2 processes share one core and the ratio means nothing.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
