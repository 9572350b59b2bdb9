"""Shadowed settings: which file each key comes from, and no shipped base silently overriding another."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO

from detsdk.plugins import get_registry
from detsdk.recipe import load_recipe
from detsdk.recipe.explain import explain_recipe, unintended_shadows


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


PLUGINS = sorted(p.name.removeprefix("det-plugin-") for p in (REPO / "plugins").glob("det-plugin-*"))
RECIPE_FOLDERS = [REPO / "sdk" / "detsdk" / "recipes", *sorted((REPO / "plugins").glob("det-plugin-*/det_plugin_*/recipes"))]
SHIPPED = sorted(
    [p for folder in RECIPE_FOLDERS for p in folder.rglob("*.toml")]
    + [p for p in (REPO / "examples").rglob("*.toml") if p.name != "pyproject.toml"]
)


@pytest.fixture(autouse=True)
def every_plugin(monkeypatch):
    """The repository's plugins loaded, so that ``plugin:path`` bases resolve."""
    from detsdk.plugins import reset_registry

    monkeypatch.setenv("DETSDK_LOAD_PLUGINS", ",".join(PLUGINS))
    reset_registry()


def test_the_walk_covers_the_core_and_every_plugins_recipes():
    shipping = {Path(c.factory).resolve() for c in get_registry().components("recipe")}
    assert shipping == {folder.resolve() for folder in RECIPE_FOLDERS}
    assert {"cityscapes", "voc", "widerface"} <= set(PLUGINS) and len(SHIPPED) > 20


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_no_shipped_recipe_has_a_base_shadowing_an_earlier_base(path):
    recipe = load_recipe(path)
    assert [(s.key_path, s.origin, s.shadowed_origin) for s in unintended_shadows(recipe)] == []


def test_the_cityscapes_recipes_log_every_100_iterations_as_mmdetections():
    for name in ("mask_rcnn_r50_fpn_1x_cityscapes.toml", "faster_rcnn_r50_fpn_1x_cityscapes.toml"):
        assert load_recipe(f"cityscapes:{name}").data["train"]["log_interval"] == 100


def test_a_later_base_over_an_earlier_one_is_an_unintended_shadow(tmp_path):
    first = write(tmp_path / "_base/schedule.toml", "[train]\nepochs = 8\nlog_interval = 100\n")
    later = write(tmp_path / "_base/runtime.toml", "[train]\nlog_interval = 50\neval_interval = 1\n")
    recipe = load_recipe(write(tmp_path / "r.toml", 'base = ["_base/schedule.toml", "_base/runtime.toml"]\n'))
    [shadow] = unintended_shadows(recipe)
    assert (shadow.key_path, shadow.shadowed_value) == ("train.log_interval", 100)
    assert Path(shadow.origin) == later and Path(shadow.shadowed_origin) == first


def test_own_keys_replace_true_and_set_over_bases_are_intended(tmp_path):
    write(tmp_path / "a.toml", "[train]\nlog_interval = 100\n[model.backbone]\ntype = 'resnet'\ndepth = 50\n")
    write(tmp_path / "b.toml", "base = ['a.toml']\n[model.backbone]\nreplace = true\ntype = 'other'\n")
    recipe_file = write(tmp_path / "r.toml", "base = ['b.toml']\n[train]\nlog_interval = 20\n")
    recipe = load_recipe(recipe_file, ["train.log_interval=5"])
    assert [(s.key_path, s.shadowed_value, s.intended) for s in recipe.shadows] == [
        ("model.backbone", {"type": "resnet", "depth": 50}, True),  # b's own replace = true over its base
        ("train.log_interval", 100, True),  # the recipe's own key over its base
        ("train.log_interval", 20, True),  # --set over the recipe
    ]


def test_an_equal_value_set_again_shadows_nothing(tmp_path):
    write(tmp_path / "a.toml", "[train]\nlog_interval = 50\n")
    write(tmp_path / "b.toml", "[train]\nlog_interval = 50\n")
    assert load_recipe(write(tmp_path / "r.toml", "base = ['a.toml', 'b.toml']\n")).shadows == []


def test_explain_names_each_keys_file_and_what_it_shadows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "_base/schedule.toml", "[train]\nepochs = 8\nlog_interval = 100\n")
    write(tmp_path / "_base/runtime.toml", "[train]\nlog_interval = 50\n")
    write(tmp_path / "r.toml", 'base = ["_base/schedule.toml", "_base/runtime.toml"]\n')
    lines = explain_recipe(load_recipe(tmp_path / "r.toml"))
    assert lines == [
        "train.epochs = 8  <- _base/schedule.toml",
        "train.log_interval = 50  <- _base/runtime.toml",
        "    shadows 100 from _base/schedule.toml  (a later base over an earlier one: check the base order)",
    ]


def test_sdk_recipe_show_explain_names_plugin_files(run_sdk):
    code, out, err = run_sdk("recipe", "show", "--explain", "cityscapes:mask_rcnn_r50_fpn_1x_cityscapes.toml")
    assert code == 0, err
    lines = out.splitlines()
    at = lines.index("train.log_interval = 100  <- cityscapes:mask_rcnn_r50_fpn_1x_cityscapes.toml")
    assert lines[at + 1] == "    shadows 50 from detsdk:_base/default_runtime.toml"
    assert "train.epochs = 8  <- cityscapes:_base/schedule_cityscapes.toml" in lines
    assert "train.amp = false  <- (default)" in lines
