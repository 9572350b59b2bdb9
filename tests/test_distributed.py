"""Distributed training (DDP through torchrun, gloo on the CPU): sharding, equivalence, evaluation, failures.

The tests that start processes run ``torch.distributed.run`` (torchrun) or
``sdk run --nproc 2`` in a subprocess, with one thread per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from conftest import tiny_recipe, write_recipe

from detsdk import Engine
from detsdk.data.samplers import EpochSampler, aspect_ratio_groups
from detsdk.engine.checkpoint import load_checkpoint
from detsdk.engine.launch import torchrun_arguments
from detsdk.errors import DetSDKWarning, RecipeError

PIPELINE = [{"type": "normalize"}, {"type": "pad", "size_divisor": 32}]


def run_processes(command: list[str], cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python <command>`` with one CPU thread per process, as torchrun's ranks get on a busy machine."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, *command], capture_output=True, text=True, env=environment, cwd=cwd,
                          timeout=300)


def torchrun(*args, cwd, env=None) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2 --standalone -m detsdk <args>``."""
    return run_processes(["-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "-m", "detsdk",
                          *map(str, args)], cwd, env)


def equivalence_recipe(work_dir, batch_size: int, iters: int = 4) -> dict:
    """A Faster R-CNN whose loss normalises every image the same way, so 2 ranks x 1 image = 1 process x 2.

    DDP averages the ranks' gradients; one process averages its loss over the
    batch. The two agree when every image adds the same number of terms to
    each loss mean, and when nothing is sampled at random:

    - frozen BatchNorm (batch statistics would differ between 1 and 2 images);
    - RPN: ``fg_iou_thresh == bg_iou_thresh`` leaves no anchor ignored, and
      ``batch_size_per_image`` above the anchor count with ``positive_fraction
      = 1`` samples every anchor: same count per image (same image size), and
      no random subset;
    - RoI head: each image has exactly ``post_nms_top_n_train`` = 16
      proposals plus its one ground-truth box (``max_objects = 1``), all
      sampled (``batch_size_per_image`` 64, ``positive_fraction = 1``);
    - no random flip; the shuffled order is the same in both runs and rank r
      takes the r-th image of each pair.

    What remains is float summation order: the weights agree to ~1e-7.
    """
    recipe = tiny_recipe(work_dir)
    recipe["model"]["backbone"]["norm"] = "frozen_bn"
    recipe["model"]["rpn_head"].update(fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=4096,
                                       positive_fraction=1.0, post_nms_top_n_train=16)
    recipe["model"]["box_head"].update(batch_size_per_image=64, positive_fraction=1.0, score_thresh=0.0)
    recipe["data"]["batch_size"] = batch_size
    recipe["data"]["train"] = {"type": "shapes", "split": "train", "num_images": 4, "image_size": 64,
                               "max_objects": 1, "pipeline": PIPELINE}
    # 5 val images in eval batches of 2: with 2 ranks, rank 0 evaluates [0, 1] and [4], rank 1 [2, 3].
    recipe["data"]["val"] = {"type": "shapes", "split": "val", "num_images": 5, "image_size": 64, "pipeline": PIPELINE}
    recipe["eval"] = {"batch_size": 2}
    recipe["train"] = {"iters": iters, "optimizer": {"type": "sgd", "lr": 0.01}, "log_interval": 1}
    recipe["runtime"]["plot_samples"] = 0
    return recipe


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """``torchrun --nproc-per-node 2 -m detsdk run`` of ``equivalence_recipe`` with 1 image per rank.

    It evaluates the final weights on the val split at the end, across both ranks.
    """
    folder = tmp_path_factory.mktemp("ddp")
    recipe = write_recipe(folder / "ddp.toml", equivalence_recipe(folder / "run", batch_size=1))
    completed = torchrun("run", recipe, "--device", "cpu", cwd=folder)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return folder, completed


def without_val(recipe: dict) -> dict:
    """The recipe without its val split (a reference run that needs no evaluation)."""
    del recipe["data"]["val"]
    return recipe


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts with the same keys."""
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel())


# -- sampling ----------------------------------------------------------------
def test_training_shards_are_disjoint_equal_sized_and_cover_the_epoch():
    shards = [list(EpochSampler(10, shuffle=True, seed=3, rank=r, world_size=4)) for r in range(4)]
    assert [len(s) for s in shards] == [3, 3, 3, 3]  # 10 padded to 12: every rank takes as many steps
    together = [i for s in shards for i in s]
    assert set(together) == set(range(10)) and len(together) == 12
    whole = list(EpochSampler(10, shuffle=True, seed=3))
    assert [shard[0] for shard in shards] == whole[:4]  # the first step of 4 ranks = one process's first 4 images


def test_evaluation_shards_deal_whole_batches_once_each():
    shards = [list(EpochSampler(7, shuffle=False, rank=r, world_size=2, pad=False, batch_size=2)) for r in range(2)]
    assert shards == [[0, 1, 4, 5], [2, 3, 6]]
    assert len(EpochSampler(7, shuffle=False, rank=1, world_size=2, pad=False, batch_size=2)) == 3


def test_aspect_ratio_groups_keep_wide_and_tall_images_apart_and_resume_mid_epoch():
    groups = [0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1]
    sampler = EpochSampler(11, shuffle=True, seed=0, batch_size=2, group_ids=groups)
    order = list(sampler)
    assert sorted(order) == list(range(11))
    batches = [order[i : i + 2] for i in range(0, 11, 2)]
    mixed = [b for b in batches if len({groups[i] for i in b}) > 1]
    assert len(mixed) <= 1 and (not mixed or mixed[0] == batches[-1] or mixed[0] == batches[-2])
    sampler.set_epoch(0, start=4)
    assert list(sampler) == order[4:] and len(sampler) == 7


def test_aspect_ratio_groups_read_coco_sizes_from_the_json_and_warn_when_they_must_decode(tmp_path):
    from detsdk.builtin.data.coco import CocoDataset

    images = [{"id": 1, "file_name": "missing-a.png", "height": 10, "width": 20},
              {"id": 2, "file_name": "missing-b.png", "height": 30, "width": 20}]
    ann_file = tmp_path / "coco.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    assert aspect_ratio_groups(CocoDataset(str(ann_file))) == [0, 1]  # no image file was read

    class Plain:
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return {"image": torch.zeros((8, 4, 3) if index else (4, 8, 3)).numpy()}

    with pytest.warns(DetSDKWarning, match="reading all 2 images once"):
        assert aspect_ratio_groups(Plain()) == [0, 1]


def test_multi_node_launch_needs_a_rendezvous_endpoint():
    assert torchrun_arguments(2, ["run", "r.toml"]) == [
        "--nproc-per-node", "2", "--nnodes", "1", "--standalone", "-m", "detsdk", "run", "r.toml"]
    static = torchrun_arguments(8, ["run", "r.toml"], nnodes="2", node_rank=1, rdzv_endpoint="node0:29400")
    assert static[:10] == ["--nproc-per-node", "8", "--nnodes", "2", "--rdzv-backend", "static",
                           "--rdzv-endpoint", "node0:29400", "--node-rank", "1"]
    dynamic = torchrun_arguments(8, ["run", "r.toml"], nnodes="2", rdzv_endpoint="node0:29400")
    assert dynamic[4:6] == ["--rdzv-backend", "c10d"] and "--node-rank" not in dynamic
    with pytest.raises(RecipeError, match="--rdzv-endpoint"):
        torchrun_arguments(8, ["run", "r.toml"], nnodes="2")


# -- processes ------------------------------------------------------------------
def test_two_ranks_with_one_image_train_to_the_weights_of_one_process_with_two(ddp_run, tmp_path):
    folder, _ = ddp_run
    distributed = load_checkpoint(folder / "run" / "last.pt")["model"]
    reference = Engine.from_recipe(without_val(equivalence_recipe(tmp_path / "one", batch_size=2)), device="cpu")
    reference.fit()
    assert max_difference(distributed, reference.model.state_dict()) < 1e-5
    # The logged losses are averaged over ranks: the batch of 2's losses.
    losses = [[r["loss"] for r in map(json.loads, (d / "log.jsonl").read_text().splitlines()) if r["mode"] == "train"]
              for d in (folder / "run", tmp_path / "one")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5) and len(losses[0]) == 4
    # The check can fail: one process with 1 image per step (other data) ends far away.
    other = Engine.from_recipe(without_val(equivalence_recipe(tmp_path / "other", batch_size=1)), device="cpu")
    other.fit()
    assert max_difference(distributed, other.model.state_dict()) > 1e-3


def test_distributed_evaluation_equals_single_process_evaluation(ddp_run, tmp_path):
    folder, completed = ddp_run
    distributed = json.loads((folder / "run" / "metrics.json").read_text())
    recipe = equivalence_recipe(tmp_path / "single", batch_size=1)
    single = Engine.from_recipe(recipe, device="cpu").evaluate(folder / "run" / "last.pt")
    assert distributed == single
    assert single["bbox_mAP"] > 0  # a real figure, not the 0 of an empty evaluation
    assert completed.stdout.count("eval val (") == 1  # only rank 0 prints


FAILING_PLUGIN = """
    import os
    import time

    from detsdk import hookimpl
    from detsdk.errors import DataError


    class FailOnRank:
        # On rank `rank`, after `after` samples: raise a DataError, or hang (hang = true).

        def __init__(self, rank: int = 1, after: int = 2, hang: bool = False):
            self.rank, self.after, self.hang, self.seen = rank, after, hang, 0

        def __call__(self, sample):
            self.seen += 1
            if os.environ.get("RANK") == str(self.rank) and self.seen > self.after:
                if self.hang:
                    time.sleep(3600)
                raise DataError(f"{sample['meta']['file']}: this image cannot be read")
            return sample


    @hookimpl
    def detsdk_register_transforms(register):
        register("fail_on_rank", FailOnRank)
"""


def run_with_failing_rank(tmp_path, hang: bool, **runtime) -> tuple[subprocess.CompletedProcess, float, list[str]]:
    """``sdk run --nproc 2`` of 1000 iterations whose rank 1 fails (or hangs) at its third image.

    Returns the completed process, its run time and its ``error:`` lines.
    """
    site = tmp_path / "site"
    info = site / "failing-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "failing.py").write_text(textwrap.dedent(FAILING_PLUGIN))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: failing\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[detsdk]\nfailing = failing\n")
    # Minutes of training, were nothing to stop it.
    recipe = tiny_recipe(tmp_path / "run", train={"iters": 1000}, runtime=runtime)
    recipe["data"]["batch_size"] = 1
    recipe["data"]["train"]["pipeline"] = [{"type": "fail_on_rank", "hang": hang}, *PIPELINE]
    path = write_recipe(tmp_path / "recipe.toml", recipe)
    started = time.perf_counter()
    completed = run_processes(["-m", "detsdk", "run", path, "--nproc", "2", "--device", "cpu"], tmp_path,
                              env={"PYTHONPATH": str(site), "DETSDK_LOAD_PLUGINS": "failing"})
    errors = [line[line.index("error: "):] for line in completed.stderr.splitlines() if "error: " in line]
    return completed, time.perf_counter() - started, errors


def test_a_user_error_on_one_rank_stops_every_rank_quickly_with_its_message(tmp_path):
    completed, elapsed, errors = run_with_failing_rank(tmp_path, hang=False)
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert any(line.startswith("error: rank 1: ") and "this image cannot be read" in line for line in errors), errors
    assert "Traceback" not in completed.stderr and "ChildFailedError" not in completed.stderr
    assert elapsed < 90, f"took {elapsed:.0f} s"


def test_a_stuck_rank_ends_the_run_after_dist_timeout_instead_of_hanging(tmp_path):
    completed, elapsed, errors = run_with_failing_rank(tmp_path, hang=True, dist_timeout=3.0)
    assert completed.returncode == 1, completed.stderr[-3000:]
    assert any(line.startswith("error: rank 0: stopped: another rank did not answer within runtime.dist_timeout")
               for line in errors), errors
    assert "Traceback" not in completed.stderr
    assert elapsed < 90, f"took {elapsed:.0f} s"


def test_sdk_run_nproc_2_writes_one_log_metrics_and_checkpoint_from_rank_0(tmp_path):
    # Loader workers and two evaluations: rank 0 draws plots (OpenCV) between them, then forks new workers.
    recipe = tiny_recipe(tmp_path / "run", data={"batch_size": 2, "group_by_aspect_ratio": True, "num_workers": 1},
                         train={"iters": 3, "eval_interval": 2, "sync_bn": True}, runtime={"dist_timeout": 60.0})
    path = write_recipe(tmp_path / "recipe.toml", recipe)
    completed = run_processes(["-m", "detsdk", "run", path, "--nproc", "2", "--device", "cpu"], tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["mode"] == "train"] == [1, 2, 3]
    assert [r["iter"] for r in records if r["mode"] == "val"] == [2, 3]
    assert (tmp_path / "run" / "plots" / "predictions.png").is_file()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics == {k: v for k, v in records[-1].items() if k.startswith("bbox_")}
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 3
    assert completed.stdout.count("work dir:") == 1
    assert completed.stderr.count("SyncBatchNorm needs CUDA") == 1  # warned once, by rank 0


def test_a_parameter_without_gradient_under_ddp_names_the_recipe_key(tmp_path):
    import torch.distributed as dist
    from torch import nn

    from detsdk.engine.distributed import DetectorDDP
    from detsdk.errors import TrainingError

    class SkipsABranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(2, 1), nn.Linear(2, 1)

        def forward(self, x):
            return self.used(x).sum()

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        model = DetectorDDP(SkipsABranch())
        model(torch.ones(1, 2)).backward()
        with pytest.raises(TrainingError, match="train.find_unused_parameters = true"):
            model(torch.ones(1, 2))
    finally:
        dist.destroy_process_group()


def test_merged_shards_reach_the_metric_in_dataset_order_with_masks_intact():
    import numpy as np

    from detsdk.engine.evaluation import merge_shards

    class Recorder:
        def __init__(self):
            self.calls = []

        def process(self, samples, detections):
            self.calls.append((samples, detections))

        def compute(self):
            return {"images": float(sum(len(samples) for samples, _ in self.calls))}

    masks = [(np.random.default_rng(i).random((2, 5, 7)) > 0.5).astype(np.uint8) for i in range(3)]
    results = [({"meta": {"image_id": i}, "masks": masks[i]}, {"boxes": np.full((1, 4), i), "masks": masks[i]})
               for i in (2, 0, 1)]
    metric = Recorder()
    assert merge_shards(metric, [2, 0, 1], results, batch_size=2) == {"images": 3.0}
    assert [len(samples) for samples, _ in metric.calls] == [2, 1]  # batches of 2, as one process feeds them
    seen = [(s, d) for samples, detections in metric.calls for s, d in zip(samples, detections)]
    assert [s["meta"]["image_id"] for s, _ in seen] == [0, 1, 2]
    for i, (sample, detection) in enumerate(seen):
        assert np.array_equal(sample["masks"], masks[i]) and sample["masks"].dtype == np.uint8
        assert np.array_equal(detection["masks"], masks[i]) and detection["boxes"][0, 0] == i


def test_the_launcher_exits_with_the_code_of_the_rank_that_failed_by_itself(capsys):
    from types import SimpleNamespace

    from detsdk.engine.launch import _failure_exit_code

    def failed(**codes_and_times):
        return SimpleNamespace(failures={int(r[1:]): SimpleNamespace(exitcode=c, timestamp=t)
                                         for r, (c, t) in codes_and_times.items()})

    assert _failure_exit_code(failed(r0=(-15, 5), r1=(1, 6))) == 1  # rank 0 was only stopped by the agent
    assert _failure_exit_code(failed(r0=(1, 4), r1=(2, 5))) == 2  # a user error wins over a lost peer
    assert capsys.readouterr().err == ""  # those ranks printed their own line
    assert _failure_exit_code(failed(r0=(-9, 3), r1=(-15, 4))) == 137
    assert capsys.readouterr().err.strip() == (
        "error: rank 0 was killed by signal SIGKILL (out of memory? the system log may say)")
