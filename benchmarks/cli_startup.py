"""How long `sdk --help` and `sdk plugins` take, next to a bare Python start (the floor).

    python benchmarks/cli_startup.py [--runs 15]

Each command runs as its own process (what a user waits for), the three in turns
so that machine load slows them alike; prints the median and the fastest wall
time and the median CPU time (user + system) in seconds. On a busy machine the
CPU time is close to what the wall time is on an idle one. The goal (issue #17):
at most 0.3 s with the three plugins installed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "sdk --help": [sys.executable, "-m", "detsdk", "--help"],
    "sdk plugins": [sys.executable, "-m", "detsdk", "plugins"],
}


def main() -> None:
    """Time every command ``--runs`` times, interleaved, and print one row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = {**os.environ}
    env.pop("DETSDK_LOAD_PLUGINS", None)  # every installed plugin, as a user has them
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            before = _children_cpu()
            start = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, check=True, env=env)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(_children_cpu() - before)
    plugins = subprocess.run(COMMANDS["sdk plugins"], capture_output=True, text=True, env=env).stdout
    loaded = [line.split()[0] for line in plugins.splitlines()[1:] if line.strip() and ":" not in line]
    print(f"plugins loaded: {', '.join(loaded)}; {args.runs} runs each; load average {os.getloadavg()[0]:.1f}")
    print(f"{'command':<16} {'median s':>9} {'fastest s':>10} {'CPU s':>7}")
    for name, values in times.items():
        print(f"{name:<16} {statistics.median(values):>9.3f} {min(values):>10.3f} {statistics.median(cpu[name]):>7.3f}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
