"""How many threads a run uses, chosen from the cores this process may actually run on.

On a machine that other processes also use, more busy threads than cores make
each OpenMP barrier wait for a thread that is not running (and spin while it
waits): the quickstart trained 8x slower on a busy 2-core machine with torch's
default of one intra-op thread per core next to a loader worker. The policy:

- the cores are ``os.sched_getaffinity(0)`` (what a container, ``taskset`` or a
  batch scheduler grants), shared by the local processes of a distributed run;
- each loader worker gets a core; the main process's torch intra-op threads get
  the rest (at least 1), never more than torch had (a lower
  ``torch.set_num_threads`` of the app's stays);
- inside workers torch already runs 1 thread (the DataLoader sets it); OpenCV
  gets 1 thread there too, set in the main process *before* the workers fork, so
  they inherit it. Calling ``cv2.setNumThreads`` inside a forked worker after the
  main process used OpenCV's thread pool deadlocks, so workers never call it;
- ``OMP_NUM_THREADS`` (torch's threads) and ``OPENCV_FOR_THREADS_NUM`` (OpenCV's),
  when set, are the user's choice and are left alone.
"""

from __future__ import annotations

import os
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


def plan_threads(
    num_workers: int, current_torch_threads: int, environ: Mapping[str, str] = os.environ
) -> ThreadPlan:
    """The thread counts for a run with ``num_workers`` loader workers (see the module docstring).

    >>> plan_threads(1, current_torch_threads=2, environ={}).torch_threads <= 2
    True
    """
    cores = available_cores(environ)
    if environ.get("OMP_NUM_THREADS"):
        torch_threads, why = None, f"OMP_NUM_THREADS={environ['OMP_NUM_THREADS']} (yours)"
    else:
        torch_threads = min(current_torch_threads, max(1, cores - num_workers))
        why = f"{torch_threads} torch thread(s): {cores} core(s) less {num_workers} loader worker(s)"
    if num_workers == 0:
        opencv_threads, opencv_why = None, "OpenCV as it is (no workers)"
    elif environ.get("OPENCV_FOR_THREADS_NUM"):
        opencv_threads, opencv_why = None, f"OPENCV_FOR_THREADS_NUM={environ['OPENCV_FOR_THREADS_NUM']} (yours)"
    else:
        opencv_threads, opencv_why = 1, "1 OpenCV thread in each worker"
    return ThreadPlan(cores=cores, torch_threads=torch_threads, opencv_threads=opencv_threads,
                      reason=f"{why}; {opencv_why}")


def apply_thread_policy(num_workers: int) -> ThreadPlan:
    """Set torch's and OpenCV's thread counts for a run with ``num_workers`` loader workers; returns the plan.

    Call it in the main process before the loaders start their workers.
    """
    import torch

    plan = plan_threads(num_workers, torch.get_num_threads())
    if plan.torch_threads is not None and plan.torch_threads != torch.get_num_threads():
        torch.set_num_threads(plan.torch_threads)
    if plan.opencv_threads is not None:
        import cv2

        cv2.setNumThreads(plan.opencv_threads)  # here, before the fork: workers inherit it
    return plan
