"""det-plugin-cityscapes as a user gets it: a wheel, pip-installed next to det-sdk, found through its entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

from conftest import REPO

RECIPES = ("mask_rcnn_r50_fpn_1x_cityscapes.toml", "faster_rcnn_r50_fpn_1x_cityscapes.toml")


def test_wheel_installs_next_to_det_sdk_with_its_components_recipes_and_command(tmp_path, run_sdk):
    source = tmp_path / "det-plugin-cityscapes"
    shutil.copytree(
        REPO / "plugins" / "det-plugin-cityscapes", source,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"),
    )
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheels"), str(source)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "wheels").glob("det_plugin_cityscapes-0.1.0-*.whl")
    packaged = zipfile.ZipFile(wheel).namelist()
    assert {f"det_plugin_cityscapes/recipes/{name}" for name in RECIPES} <= set(packaged)
    assert "det_plugin_cityscapes/recipes/_base/cityscapes_instance.toml" in packaged

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    env = {"PYTHONPATH": str(site), "DETSDK_LOAD_PLUGINS": "cityscapes", "DETSDK_STRICT_PLUGINS": "1"}
    loaded_from = subprocess.run(
        [sys.executable, "-c", "import det_plugin_cityscapes; print(det_plugin_cityscapes.__file__)"],
        capture_output=True, text=True, env={**os.environ, **env},
    )
    assert loaded_from.stdout.startswith(str(site)), loaded_from.stdout + loaded_from.stderr

    code, out, err = run_sdk("plugins", "--json", env=env)
    assert code == 0, err
    plugin = next(p for p in json.loads(out) if p["name"] == "cityscapes")
    assert plugin["version"] == "0.1.0" and not plugin["errors"]
    assert set(plugin["components"]) == {"dataset:cityscapes", "metric:cityscapes", "recipe:cityscapes"}
    assert "detsdk_register_commands" in plugin["hooks"]

    code, out, err = run_sdk("list", "recipe", env=env)
    assert all(f"cityscapes:{name}" in out for name in RECIPES), out

    # A shipped recipe resolves and validates from the installed copy.
    (tmp_path / "mine.toml").write_text(f'base = ["cityscapes:{RECIPES[0]}"]\n')
    code, out, err = run_sdk("recipe", "show", tmp_path / "mine.toml", env=env)
    assert code == 0, err
    assert 'load_from = "checkpoints/mask_rcnn_r50_fpn_1x_coco_20200205-d4b0c5d6.pth"' in out
