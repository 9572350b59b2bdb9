"""The thread policy: torch threads from the cores the process may use, less the loader workers; users' settings win."""

from __future__ import annotations

import pytest

from detsdk import threads
from detsdk.threads import available_cores, plan_threads


@pytest.fixture
def cores(monkeypatch):
    """Pretend the process may run on ``n`` cores (os.sched_getaffinity)."""

    def grant(n: int) -> None:
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(n)))

    return grant


def test_cores_come_from_the_affinity_not_the_machine(cores, monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 64)
    cores(3)
    assert available_cores({}) == 3


def test_local_ranks_share_the_cores(cores):
    cores(8)
    assert available_cores({"LOCAL_WORLD_SIZE": "2"}) == 4
    assert available_cores({"LOCAL_WORLD_SIZE": "16"}) == 1


def test_on_a_busy_machine_each_loader_worker_takes_a_core_from_the_torch_threads(cores):
    cores(2)
    assert plan_threads(1, current_torch_threads=2, environ={}, busy=2.0).torch_threads == 1  # quickstart, 2 busy loops
    cores(16)
    assert plan_threads(4, current_torch_threads=16, environ={}, busy=4.2).torch_threads == 8


def test_on_an_idle_machine_torch_keeps_every_core_and_the_workers_share_them(cores):
    cores(2)
    plan = plan_threads(1, current_torch_threads=2, environ={}, busy=0.3)
    assert plan.torch_threads == 2 and "idle" in plan.reason


def test_at_least_one_torch_thread_however_many_workers(cores):
    cores(2)
    assert plan_threads(8, current_torch_threads=2, environ={}, busy=1.0).torch_threads == 1


def test_busy_cores_counts_the_other_processes_time_not_this_ones(monkeypatch):
    machine = iter([100.0, 100.3])  # all cores: 0.3 CPU s not idle during the 0.1 s sample
    own = iter([5.0, 5.1])  # of which this process used 0.1 s
    monkeypatch.setattr(threads, "_busy_seconds", lambda: next(machine))
    monkeypatch.setattr(threads.time, "process_time", lambda: next(own))
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    assert threads.busy_cores(0.1) == pytest.approx(2.0)


def test_busy_cores_reads_proc_stat():
    assert 0.0 <= threads.busy_cores(0.05) <= threads.os.cpu_count() + 1


def test_never_more_torch_threads_than_it_had(cores):
    cores(32)  # e.g. 16 physical cores with hyper-threads: torch's default is 16; or an app set 4
    assert plan_threads(0, current_torch_threads=16, environ={}).torch_threads == 16
    assert plan_threads(2, current_torch_threads=4, environ={}).torch_threads == 4


def test_omp_num_threads_is_the_users_choice(cores):
    cores(2)
    plan = plan_threads(1, current_torch_threads=2, environ={"OMP_NUM_THREADS": "2"})
    assert plan.torch_threads is None and "OMP_NUM_THREADS=2" in plan.reason


def test_workers_get_one_opencv_thread_set_before_they_fork(cores):
    cores(4)
    assert plan_threads(2, current_torch_threads=4, environ={}).opencv_threads == 1
    assert plan_threads(0, current_torch_threads=4, environ={}).opencv_threads is None  # no workers: left alone
    assert plan_threads(2, current_torch_threads=4, environ={"OPENCV_FOR_THREADS_NUM": "4"}).opencv_threads is None


def test_apply_sets_torch_and_opencv_and_a_second_call_changes_nothing(cores, monkeypatch):
    import cv2
    import torch

    before = (torch.get_num_threads(), cv2.getNumThreads())
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENCV_FOR_THREADS_NUM", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cores(2)
    try:
        torch.set_num_threads(2)
        plan = threads.apply_thread_policy(num_workers=1)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1) == (plan.torch_threads, plan.opencv_threads)
        assert threads.apply_thread_policy(num_workers=1).torch_threads == 1
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def test_the_engine_applies_the_policy_before_its_loaders_fork(tmp_path, cores, monkeypatch):
    import torch
    from conftest import tiny_recipe

    import detsdk

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    cores(2)
    recipe = tiny_recipe(tmp_path / "run")
    recipe["data"]["num_workers"] = 1
    try:
        torch.set_num_threads(2)
        engine = detsdk.Engine.from_recipe(recipe)
        assert engine.threads.torch_threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
