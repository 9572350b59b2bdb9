"""Recipe validation: every component table checked against its factory before anything is built."""

from __future__ import annotations

import pytest

from detsdk.errors import DetSDKError, RecipeError
from detsdk.recipe import load_recipe, validate_recipe, with_defaults

MODEL = {
    "type": "faster_rcnn",
    "backbone": {"type": "resnet", "depth": 18},
    "neck": {"type": "fpn", "out_channels": 32},
}


def recipe(**tables):
    return load_recipe({"model": MODEL, **tables})


def test_a_valid_recipe_passes():
    validate_recipe(recipe(train={"epochs": 1, "optimizer": {"type": "sgd", "lr": 0.01}}))


def test_unknown_component_suggests_the_nearest_name_and_gives_the_key_path():
    bad = load_recipe({"model": {**MODEL, "backbone": {"type": "resnt"}}})
    with pytest.raises(DetSDKError, match=r"model\.backbone\.type: unknown backbone 'resnt' \(did you mean 'resnet'\?\)"):
        validate_recipe(bad)


def test_unknown_parameter_suggests_the_nearest_name():
    bad = load_recipe({"model": {**MODEL, "backbone": {"type": "resnet", "depht": 18}}})
    with pytest.raises(RecipeError, match=r"unknown parameter 'depht' for backbone 'resnet' at model\.backbone\.depht \(did you mean 'depth'\?\)"):
        validate_recipe(bad)


def test_unknown_top_level_table_is_named():
    with pytest.raises(RecipeError, match=r"unknown top-level key 'trian' \(did you mean 'train'\?\)"):
        validate_recipe(recipe(trian={"epochs": 1}))


def test_unknown_train_key_is_named():
    with pytest.raises(RecipeError, match=r"unknown key 'train.epoch' \(did you mean 'epochs'\?\)"):
        validate_recipe(recipe(train={"epoch": 1}))


def test_bad_set_key_names_the_override():
    bad = load_recipe({"model": MODEL}, ["train.epochz=3"])
    with pytest.raises(RecipeError, match=r"--set train.epochz=3: unknown key 'train.epochz'"):
        validate_recipe(bad)


def test_a_value_of_the_wrong_type_is_refused():
    with pytest.raises(RecipeError, match=r"'train.epochs' = 'ten': expected a int"):
        validate_recipe(recipe(train={"epochs": "ten"}))


def test_pipeline_transforms_are_validated_with_their_index():
    data = {"train": {"type": "shapes", "pipeline": [{"type": "normalize"}, {"type": "resise"}]}}
    with pytest.raises(DetSDKError, match=r"data\.train\.pipeline\[1\]\.type: unknown transform 'resise' \(did you mean 'resize'\?\)"):
        validate_recipe(recipe(data=data))


def test_keys_the_engine_injects_are_refused():
    bad = load_recipe({"model": {**MODEL, "neck": {"type": "fpn", "in_channels": [1, 2]}}})
    with pytest.raises(RecipeError, match=r"model\.neck\.in_channels' is set by the engine"):
        validate_recipe(bad)


def test_missing_required_parameter_is_named():
    with pytest.raises(RecipeError, match="dataset 'coco' at data.val needs ann_file"):
        validate_recipe(recipe(data={"val": {"type": "coco"}}))


def test_nested_head_tables_are_validated():
    bad = load_recipe({"model": {**MODEL, "box_head": {"type": "shared2fc_box_head", "fc_channel": 8}}})
    with pytest.raises(RecipeError, match=r"model\.box_head\.fc_channel \(did you mean 'fc_channels'\?\)"):
        validate_recipe(bad)


def test_defaults_fill_missing_keys_and_keep_given_ones():
    config = with_defaults({"train": {"epochs": 3, "optimizer": {"type": "sgd", "lr": 0.1}}})
    assert config["train"]["epochs"] == 3
    assert config["train"]["optimizer"] == {"type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
    assert config["runtime"]["seed"] == 0


def test_a_component_of_another_type_replaces_the_default_table():
    config = with_defaults({"train": {"optimizer": {"type": "adamw", "lr": 0.001}}})
    assert config["train"]["optimizer"] == {"type": "adamw", "lr": 0.001}
