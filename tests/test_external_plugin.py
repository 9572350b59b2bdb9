"""A plugin package built and pip-installed from outside the core, used end to end through ``sdk run``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import REPO


def test_installed_plugin_components_train_and_evaluate_through_sdk_run(tmp_path, run_sdk):
    source = tmp_path / "det-plugin-toy"
    shutil.copytree(REPO / "examples" / "plugin_template", source)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(source)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    # The plugin's folder first; then this checkout's sources, when PYTHONPATH names them.
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])), "DETSDK_LOAD_PLUGINS": "toy", "DETSDK_STRICT_PLUGINS": "1"}

    code, out, err = run_sdk("plugins", "--json", env=env)
    assert code == 0, err
    toy = next(p for p in json.loads(out) if p["name"] == "toy")
    assert toy["version"] == "0.1.0" and toy["distribution"] == "det-plugin-toy" and not toy["errors"]
    assert set(toy["components"]) == {
        "backbone:toy_convnet", "dataset:toy_blocks", "transform:toy_noise", "scheduler:toy_linear", "hook:toy_loss_csv"
    }

    work_dir = tmp_path / "run"
    code, out, err = run_sdk("run", source / "recipe.toml", "--work-dir", work_dir, env=env)
    assert code == 0, err
    metrics = json.loads((work_dir / "metrics.json").read_text())
    assert {"bbox_mAP", "bbox_mAP_50", "bbox_mAP_75"} <= metrics.keys()
    assert all(value == -1.0 or 0.0 <= value <= 1.0 for value in metrics.values())  # -1: no such boxes
    assert (work_dir / "last.pt").exists() and (work_dir / "best.pt").exists()
    lines = (work_dir / "losses.csv").read_text().splitlines()  # the plugin's hook wrote its own file
    assert lines[0] == "iteration,loss" and [int(line.split(",")[0]) for line in lines[1:]] == [1, 2, 3, 4]
