"""The shipped examples run as documented."""

from __future__ import annotations

import subprocess
import sys

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
