"""The shipped examples run as documented."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO


def test_embed_app_trains_then_predicts_on_an_array(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "embed" / "app.py"), "--iters", "2", "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "trained 2 iterations" in result.stdout and "detections" in result.stdout
    assert (tmp_path / "best.pt").is_file()


def test_quickstart_recipe_resolves_and_validates(run_sdk):
    code, out, err = run_sdk("recipe", "show", REPO / "examples" / "quickstart" / "recipe.toml")
    assert code == 0, err
    assert 'type = "shapes"' in out


QUICKSTART_RECIPES = {
    "recipe.toml": "faster_rcnn",
    "mask_rcnn.toml": "mask_rcnn",
    "retinanet.toml": "retinanet",
    "fcos.toml": "fcos",
    "rtmdet.toml": "rtmdet",
}


@pytest.mark.parametrize("recipe", list(QUICKSTART_RECIPES))
def test_every_quickstart_detector_trains_and_evaluates_through_sdk_run(recipe, run_sdk, tmp_path):
    work_dir = tmp_path / "run"
    shrink = ["train.iters=2", "data.batch_size=2", "data.num_workers=0", "runtime.plot_samples=0",
              "data.train.num_images=4", "data.val.num_images=2", "data.train.image_size=64",
              "data.val.image_size=64", "model.neck.out_channels=32"]
    overrides = [arg for value in shrink for arg in ("--set", value)]
    code, out, err = run_sdk("run", REPO / "examples" / "quickstart" / recipe, "--work-dir", work_dir, *overrides,
                             env={"OMP_NUM_THREADS": "1"})
    assert code == 0, err
    resolved = (work_dir / "recipe.toml").read_text()
    assert f'type = "{QUICKSTART_RECIPES[recipe]}"' in resolved
    metrics = json.loads((work_dir / "metrics.json").read_text())
    assert "bbox_mAP" in metrics
    assert ("segm_mAP" in metrics) == (recipe == "mask_rcnn.toml")
    assert (work_dir / "best.pt").is_file()
