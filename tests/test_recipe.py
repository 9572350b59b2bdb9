"""Recipes: TOML loading, inheritance, merge rules, overrides and their errors."""

from __future__ import annotations

import pytest

from detsdk.errors import RecipeError
from detsdk.recipe import load_recipe, parse_override


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_bases_merge_left_to_right_then_the_recipe_wins(tmp_path):
    write(tmp_path / "_base/a.toml", "[train]\nepochs = 1\nlog_interval = 5\n[runtime]\nseed = 1\n")
    write(tmp_path / "_base/b.toml", "[train]\nepochs = 2\n")
    recipe = write(tmp_path / "r.toml", 'base = ["_base/a.toml", "_base/b.toml"]\n[runtime]\nseed = 3\n')
    data = load_recipe(recipe).data
    assert data["train"] == {"epochs": 2, "log_interval": 5}
    assert data["runtime"]["seed"] == 3
    assert "base" not in data


def test_arrays_replace_instead_of_merging(tmp_path):
    write(tmp_path / "base.toml", "[train.scheduler]\ntype = 'step'\nmilestones = [8, 11]\n")
    recipe = write(tmp_path / "r.toml", "base = ['base.toml']\n[train.scheduler]\nmilestones = [3]\n")
    assert load_recipe(recipe).data["train"]["scheduler"] == {"type": "step", "milestones": [3]}


def test_replace_true_drops_the_inherited_table(tmp_path):
    write(tmp_path / "base.toml", "[model.backbone]\ntype = 'resnet'\ndepth = 50\nfrozen_stages = 1\n")
    recipe = write(tmp_path / "r.toml", "base = ['base.toml']\n[model.backbone]\nreplace = true\ntype = 'other'\n")
    assert load_recipe(recipe).data["model"]["backbone"] == {"type": "other"}


def test_sources_name_the_file_that_set_each_key(tmp_path):
    base = write(tmp_path / "base.toml", "[train]\nepochs = 1\n")
    recipe = write(tmp_path / "r.toml", "base = ['base.toml']\n[runtime]\nseed = 2\n")
    loaded = load_recipe(recipe, ["train.log_interval=3"])
    assert loaded.source_of("train.epochs") == str(base)
    assert loaded.source_of("runtime.seed") == str(recipe)
    assert loaded.source_of("train.log_interval").startswith("--set")


@pytest.mark.parametrize(
    "text, expected",
    [("train.epochs=12", ("train.epochs", 12)), ("a.b=0.5", ("a.b", 0.5)), ("a=[1, 2]", ("a", [1, 2])),
     ("a=true", ("a", True)), ("a='x'", ("a", "x")), ("runtime.work_dir=runs/x", ("runtime.work_dir", "runs/x")),
     ("m.backbone={ type = 'resnet', depth = 18 }", ("m.backbone", {"type": "resnet", "depth": 18}))],
)
def test_override_values_are_parsed_as_toml(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["train.epochs", "=3", "a..b=1"])
def test_malformed_override_is_an_error(text):
    with pytest.raises(RecipeError, match="expected KEY.PATH=VALUE"):
        parse_override(text)


def test_override_through_a_value_is_an_error(tmp_path):
    recipe = write(tmp_path / "r.toml", "[train]\nepochs = 1\n")
    with pytest.raises(RecipeError, match="'train.epochs' is a value"):
        load_recipe(recipe, ["train.epochs.x=1"])


def test_missing_recipe_names_the_path(tmp_path):
    with pytest.raises(RecipeError, match="recipe not found: .*nope.toml"):
        load_recipe(tmp_path / "nope.toml")


def test_python_file_is_refused_as_a_recipe(tmp_path):
    config = write(tmp_path / "config.py", "import os\nos.system('touch pwned')\n")
    with pytest.raises(RecipeError, match="Python file is not a recipe"):
        load_recipe(config)
    assert not (tmp_path / "pwned").exists()


def test_malformed_toml_names_file_and_line(tmp_path):
    recipe = write(tmp_path / "bad.toml", "[train]\nepochs = 1\nlr = = 2\n")
    with pytest.raises(RecipeError, match=r"bad.toml: invalid TOML: .*line 3"):
        load_recipe(recipe)


def test_missing_base_names_it(tmp_path):
    recipe = write(tmp_path / "r.toml", "base = ['_base/gone.toml']\n")
    with pytest.raises(RecipeError, match="base recipe not found: _base/gone.toml"):
        load_recipe(recipe)


def test_circular_inheritance_shows_the_cycle(tmp_path):
    write(tmp_path / "a.toml", "base = ['b.toml']\n")
    write(tmp_path / "b.toml", "base = ['a.toml']\n")
    with pytest.raises(RecipeError, match=r"circular inheritance: .*a.toml -> .*b.toml -> .*a.toml"):
        load_recipe(tmp_path / "a.toml")


def test_plugin_recipe_base_resolves_through_the_registry(tmp_path):
    recipe = write(tmp_path / "r.toml", "base = ['detsdk:_base/does_not_exist.toml']\n")
    with pytest.raises(Exception, match="ships no recipe '_base/does_not_exist.toml'"):
        load_recipe(recipe)


def test_unknown_plugin_in_base_is_named(tmp_path):
    recipe = write(tmp_path / "r.toml", "base = ['nosuchplugin:x.toml']\n")
    with pytest.raises(Exception, match="no plugin 'nosuchplugin' ships recipes"):
        load_recipe(recipe)


def test_dict_recipes_take_overrides():
    assert load_recipe({"train": {"epochs": 2}}, ["train.epochs=3"]).data == {"train": {"epochs": 3}}


def test_a_key_set_in_a_nested_base_names_that_base_not_the_outer_one(tmp_path):
    inner = write(tmp_path / "_base/inner.toml", "[train]\nepochs = 4\n")
    outer = write(tmp_path / "_base/outer.toml", "base = ['inner.toml']\n[runtime]\nseed = 1\n")
    recipe = load_recipe(write(tmp_path / "r.toml", "base = ['_base/outer.toml']\n"))
    assert recipe.source_of("train.epochs") == str(inner)
    assert recipe.source_of("runtime.seed") == str(outer)


def test_a_shipped_recipe_loads_directly_by_its_plugin_reference():
    recipe = load_recipe("detsdk:faster_rcnn_r50_fpn_1x_coco.toml", ["train.epochs=1"])
    assert recipe.data["model"]["type"] == "faster_rcnn" and recipe.data["train"]["epochs"] == 1
    assert recipe.stem == "faster_rcnn_r50_fpn_1x_coco"
