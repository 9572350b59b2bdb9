"""``runtime.load_from`` (or ``checkpoint=``) before any ``fit()``: predict and evaluate as Detectron2's DefaultPredictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_recipe

from detsdk import Engine
from detsdk.engine.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-iteration model, its engine's predictions and evaluation, and its weights under torchvision's names."""
    work_dir = tmp_path_factory.mktemp("trained")
    recipe = tiny_recipe(work_dir, runtime={"work_dir": str(work_dir), "plot_samples": 0}, train={"iters": 2})
    recipe["model"]["box_head"]["score_thresh"] = 0.0
    engine = Engine.from_recipe(recipe)
    engine.fit()
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    own = load_checkpoint(work_dir / "last.pt")["model"]
    renamed = {("backbone.body." + k[len("backbone."):]) if k.startswith("backbone.") else
               ("backbone.fpn." + k[len("neck.fpn."):]) if k.startswith("neck.fpn.") else k: v for k, v in own.items()}
    torch.save(renamed, work_dir / "torchvision.pth")
    return recipe, work_dir, image, engine.predict(image), dict(engine.metrics)


def same_detections(a, b) -> bool:
    return torch.equal(torch.as_tensor(a.boxes), torch.as_tensor(b.boxes)) and torch.equal(
        torch.as_tensor(a.scores), torch.as_tensor(b.scores))


@pytest.mark.parametrize("weights", ["last.pt", "torchvision.pth"])
def test_predict_builds_the_model_with_load_from_weights(trained, weights):
    recipe, work_dir, image, expected, _ = trained
    engine = Engine.from_recipe(recipe, overrides=[f"runtime.load_from='{work_dir / weights}'"])
    assert len(expected.boxes) > 0
    assert same_detections(engine.predict(image), expected)


def test_predict_takes_a_checkpoint_argument(trained):
    recipe, work_dir, image, expected, _ = trained
    assert same_detections(Engine.from_recipe(recipe).predict(image, checkpoint=work_dir / "last.pt"), expected)


def test_evaluate_without_a_checkpoint_uses_load_from(trained):
    recipe, work_dir, _, _, metrics = trained
    engine = Engine.from_recipe(recipe, overrides={"runtime.load_from": str(work_dir / "last.pt")})
    assert engine.evaluate(split="val") == metrics


def test_predict_without_weights_says_how_to_get_a_model(trained):
    from detsdk.errors import RecipeError

    recipe, _, image, _, _ = trained
    with pytest.raises(RecipeError, match="no model yet.*runtime.load_from"):
        Engine.from_recipe(recipe).predict(image)
