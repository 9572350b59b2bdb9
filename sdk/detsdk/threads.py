"""How many threads a run uses, chosen from the cores this process may actually run on.

On a machine that other processes also use, more busy threads than cores make
each OpenMP barrier wait for a thread that is not running (and spin while it
waits): the quickstart trained 8x slower on a busy 2-core machine with torch's
default of one intra-op thread per core next to a loader worker. The policy:

- the cores are ``os.sched_getaffinity(0)`` (what a container, ``taskset`` or a
  batch scheduler grants), shared by the local processes of a distributed run;
- when other processes keep cores busy (``busy_cores``: ``/proc/stat`` sampled
  for 0.1 s when the first engine starts, this process's own time left out), those
  cores are not available, and each loader worker gets one of the rest; the main
  process's torch intra-op threads get what is left (at least 1). On an idle
  machine torch keeps every core and the workers share them (they mostly wait:
  the quickstart on 2 idle cores runs 0.77 s/iteration with 2 threads, 0.94 with
  1). Never more than torch had (a lower ``torch.set_num_threads`` of the app's stays);
- inside workers torch already runs 1 thread (the DataLoader sets it); OpenCV
  gets 1 thread there too, set in the main process *before* the workers fork, so
  they inherit it. Calling ``cv2.setNumThreads`` inside a forked worker after the
  main process used OpenCV's thread pool deadlocks, so workers never call it;
- ``OMP_NUM_THREADS`` (torch's threads) and ``OPENCV_FOR_THREADS_NUM`` (OpenCV's),
  when set, are the user's choice and are left alone.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping

import attrs


@attrs.frozen
class ThreadPlan:
    """What ``plan_threads`` decided; ``None`` leaves a setting as it is."""

    cores: int
    torch_threads: int | None
    opencv_threads: int | None
    reason: str


def available_cores(environ: Mapping[str, str] = os.environ) -> int:
    """The cores this process may run on, divided between the local processes of a distributed run."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local_processes = int(environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(1, local_processes))


def busy_cores(seconds: float = 0.1) -> float:
    """How many cores other processes keep busy now: ``/proc/stat``'s non-idle time over ``seconds``,
    less this process's own; 0 where there is no ``/proc/stat`` (not Linux)."""
    try:
        before, own_before = _busy_seconds(), time.process_time()
        time.sleep(seconds)
        after, own_after = _busy_seconds(), time.process_time()
    except (OSError, ValueError):
        return 0.0
    return max(0.0, (after - before - (own_after - own_before)) / seconds)


def _busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (``/proc/stat``'s first line)."""
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def plan_threads(
    num_workers: int, current_torch_threads: int, environ: Mapping[str, str] = os.environ, busy: float = 0.0
) -> ThreadPlan:
    """The thread counts for a run with ``num_workers`` loader workers while other processes keep
    ``busy`` cores busy (see the module docstring).

    >>> plan_threads(1, current_torch_threads=2, environ={}, busy=2.0).torch_threads
    1
    """
    cores = available_cores(environ)
    taken = min(cores, round(busy))
    if environ.get("OMP_NUM_THREADS"):
        torch_threads, why = None, f"OMP_NUM_THREADS={environ['OMP_NUM_THREADS']} (yours)"
    elif taken == 0:
        torch_threads = min(current_torch_threads, cores)
        why = f"{torch_threads} torch thread(s): {cores} idle core(s), shared with {num_workers} loader worker(s)"
    else:
        torch_threads = min(current_torch_threads, max(1, cores - taken - num_workers))
        why = (f"{torch_threads} torch thread(s): {cores} core(s), {taken} busy with other processes, "
               f"less {num_workers} loader worker(s)")
    if num_workers == 0:
        opencv_threads, opencv_why = None, "OpenCV as it is (no workers)"
    elif environ.get("OPENCV_FOR_THREADS_NUM"):
        opencv_threads, opencv_why = None, f"OPENCV_FOR_THREADS_NUM={environ['OPENCV_FOR_THREADS_NUM']} (yours)"
    else:
        opencv_threads, opencv_why = 1, "1 OpenCV thread in each worker"
    return ThreadPlan(cores=cores, torch_threads=torch_threads, opencv_threads=opencv_threads,
                      reason=f"{why}; {opencv_why}")


@functools.cache
def _busy_at_start() -> float:
    """``busy_cores`` when the process's first engine starts (measured once: 0.1 s)."""
    return busy_cores()


def apply_thread_policy(num_workers: int) -> ThreadPlan:
    """Set torch's and OpenCV's thread counts for a run with ``num_workers`` loader workers; returns the plan.

    Call it in the main process before the loaders start their workers.
    """
    import torch

    plan = plan_threads(num_workers, torch.get_num_threads(), busy=_busy_at_start())
    if plan.torch_threads is not None and plan.torch_threads != torch.get_num_threads():
        torch.set_num_threads(plan.torch_threads)
    if plan.opencv_threads is not None:
        import cv2

        cv2.setNumThreads(plan.opencv_threads)  # here, before the fork: workers inherit it
    return plan
