"""The quickstart's training steps on a busy machine: det-sdk's thread policy against today's defaults.

    python benchmarks/busy_machine.py [--busy 2] [--iters 8] [--warmup 2] [--rounds 2] [--recipe PATH]

``--busy`` processes spin on the CPU for the whole run (the competing load;
``--busy 0`` when the machine is busy already). Each side trains the same
recipe (default ``examples/quickstart/recipe.toml``, evaluation off) for
``--warmup + --iters`` iterations in a fresh process, the sides taking turns
over ``--rounds`` rounds so that changes in the load hit both alike:

- ``policy``: det-sdk's choice (``detsdk/threads.py``): torch threads from the
  cores ``os.sched_getaffinity`` grants; when other processes keep some busy,
  less those and one per loader worker; 1 OpenCV thread in the workers;
- ``today``: the defaults before it, pinned with ``OMP_NUM_THREADS`` (torch's
  default: one thread per physical core) and ``OPENCV_FOR_THREADS_NUM`` (the
  CPU count), which the policy leaves alone as a user's choice.

Prints seconds per iteration (median and mean of the steady iterations), the
thread counts each side ran with, and the ratio today / policy.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO / "examples" / "quickstart" / "recipe.toml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--busy", type=int, default=2, help="competing busy-loop processes (default 2)")
    parser.add_argument("--iters", type=int, default=8, help="timed iterations per side and round (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="iterations dropped at the start (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both sides, order alternating (default 2)")
    parser.add_argument("--child", choices=("policy", "today"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iters < 2 or args.warmup < 1 or args.rounds < 1 or args.busy < 0:
        parser.error("need --iters >= 2, --warmup >= 1, --rounds >= 1 and --busy >= 0")
    return args


def spin() -> None:
    """A competing CPU load: one core's worth of busy loop, until terminated."""
    while True:
        pass


def train_and_time(args: argparse.Namespace) -> dict:
    """In a child process: train ``warmup + iters`` iterations; the thread counts and seconds per iteration."""
    import cv2
    import torch

    import detsdk
    from detsdk.plugins import get_registry
    from detsdk.recipe import load_recipe

    stamps: list[float] = []

    class IterationClock:
        @detsdk.hookimpl
        def detsdk_after_train_iter(self, engine, iteration, losses):
            stamps.append(time.perf_counter())

    get_registry().add_plugin("busy-machine-clock", "0", IterationClock)
    with tempfile.TemporaryDirectory(prefix="busy-machine-") as work_dir:
        overrides = [f"train.iters={args.warmup + args.iters}", "train.eval_interval=0", "train.log_interval=1000",
                     "runtime.plot_samples=0", f"runtime.work_dir='{work_dir}'"]
        recipe = load_recipe(args.recipe, overrides)
        for split in ("val", "test"):  # evaluation is not part of a training step
            recipe.data.get("data", {}).pop(split, None)
        engine = detsdk.Engine(recipe)
        threads = {"torch": torch.get_num_threads(), "opencv": cv2.getNumThreads(),
                   "workers": int(engine.config["data"]["num_workers"])}
        engine.fit()
    return {**threads, "times": [b - a for a, b in zip(stamps[args.warmup - 1:], stamps[args.warmup:])]}


def today_environment() -> dict[str, str]:
    """The defaults before the policy, pinned as a user would: torch's default threads, OpenCV's CPU count."""
    probe = "import torch, cv2; print(torch.get_num_threads(), cv2.getNumThreads())"
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")}
    torch_threads, opencv_threads = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=clean).stdout.split()
    return {**clean, "OMP_NUM_THREADS": torch_threads, "OPENCV_FOR_THREADS_NUM": opencv_threads}


def run_side(side: str, args: argparse.Namespace, environments: dict[str, dict[str, str]]) -> dict:
    """One side's training in a fresh process; its JSON report."""
    command = [sys.executable, __file__, "--child", side, "--recipe", args.recipe,
               "--iters", str(args.iters), "--warmup", str(args.warmup)]
    result = subprocess.run(command, capture_output=True, text=True, env=environments[side])
    if result.returncode != 0:
        raise SystemExit(f"the {side} side failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Start the load, run the rounds, print the table; returns the exit code."""
    args = parse_args(argv)
    if args.child:
        print(json.dumps(train_and_time(args)))
        return 0
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")}
    environments = {"policy": clean, "today": today_environment()}
    load = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for process in load:
        process.start()
    reports: dict[str, list[dict]] = {"today": [], "policy": []}
    try:
        for round_index in range(args.rounds):
            order = ("today", "policy") if round_index % 2 == 0 else ("policy", "today")
            for side in order:
                reports[side].append(run_side(side, args, environments))
                print(f"round {round_index + 1} {side}: median "
                      f"{statistics.median(reports[side][-1]['times']):.3f} s/iter", flush=True)
    finally:
        for process in load:
            process.terminate()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"\n{Path(args.recipe).name}, {cores} cores available, {args.busy} busy-loop processes, "
          f"load average {os.getloadavg()[0]:.1f} at the end; {args.rounds} rounds x {args.iters} iterations")
    print(f"{'side':<8} {'torch threads':>13} {'OpenCV threads':>14} {'workers':>7} {'median s/iter':>13} {'mean s/iter':>11}")
    medians = {}
    for side, runs in reports.items():
        times = [t for run in runs for t in run["times"]]
        medians[side] = statistics.median(times)
        first = runs[0]
        print(f"{side:<8} {first['torch']:>13} {first['opencv']:>14} {first['workers']:>7} "
              f"{medians[side]:>13.3f} {statistics.mean(times):>11.3f}")
    print(f"ratio today / policy (median s/iter): {medians['today'] / medians['policy']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
