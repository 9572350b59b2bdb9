"""``pipeline_switch``: another training pipeline from an epoch on, in persistent workers too, with exact resume."""

from __future__ import annotations

import torch
from conftest import tiny_recipe

from detsdk import Engine
from detsdk.data.loader import PipelineDataset, build_loader
from detsdk.engine.build import build_dataset, build_transforms
from detsdk.engine.checkpoint import load_checkpoint

SWITCHED = [{"type": "resize", "scale": [96, 96], "keep_ratio": False}, {"type": "normalize"}, {"type": "pad", "size_divisor": 32}]


def test_each_epoch_takes_its_stage_in_persistent_workers(tmp_path):
    spec = tiny_recipe(tmp_path)["data"]["train"]
    dataset = PipelineDataset(build_dataset(spec, "data.train"), build_transforms(spec, "data.train"))
    dataset.add_stage(1, build_transforms({"pipeline": SWITCHED}, "switched"))
    dataset.seed_samples(0)
    loader = build_loader(dataset, 4, num_workers=1, shuffle=True, persistent_workers=True)

    def image_sizes(epoch: int) -> set[tuple[int, int]]:
        loader.sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        return {tuple(images.shape[-2:]) for images, _, _ in loader}

    assert image_sizes(0) == {(64, 64)}  # the workers start here, with both stages
    assert image_sizes(1) == {(96, 96)}
    assert image_sizes(2) == {(96, 96)}
    assert image_sizes(0) == {(64, 64)}


def switch_recipe(work_dir, epochs: int, switch: bool = True) -> dict:
    """Two iterations an epoch, a persistent loader worker, random flips; the switch from epoch 2 (1-based)."""
    hooks = [{"type": "pipeline_switch", "switch_epoch": 2, "pipeline": SWITCHED}] if switch else []
    recipe = tiny_recipe(work_dir, train={"epochs": epochs, "iters": 0, "hooks": hooks, "eval_interval": 10},
                         runtime={"work_dir": str(work_dir), "plot_samples": 0, "deterministic": True, "seed": 1})
    recipe["data"]["num_workers"] = 1
    del recipe["data"]["val"]
    return recipe


def weights(work_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(work_dir / "last.pt")["model"]


def test_the_switch_changes_training_and_resume_across_it_is_exact(tmp_path):
    straight, resumed, unswitched = tmp_path / "straight", tmp_path / "resumed", tmp_path / "unswitched"
    Engine.from_recipe(switch_recipe(straight, epochs=3)).fit()
    Engine.from_recipe(switch_recipe(unswitched, epochs=3, switch=False)).fit()
    Engine.from_recipe(switch_recipe(resumed, epochs=1)).fit()  # stops before the switch; resumed for 3 epochs
    engine = Engine.from_recipe(switch_recipe(resumed, epochs=3))
    engine.fit(resume=True)

    assert engine.train_data.stages[1][0] == 1  # 0-based epoch 1 is 1-based epoch 2
    expected, got = weights(straight), weights(resumed)
    assert load_checkpoint(resumed / "last.pt")["iteration"] == 6
    assert all(torch.equal(got[name], tensor) for name, tensor in expected.items())
    assert not all(torch.equal(weights(unswitched)[name], tensor) for name, tensor in expected.items())
