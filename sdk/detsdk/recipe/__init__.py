"""Data-only TOML recipes: loading, inheritance, overrides and validation."""

from detsdk.recipe.load import Recipe, dump_recipe, load_recipe, parse_override
from detsdk.recipe.schema import validate_recipe, with_defaults

__all__ = ["Recipe", "dump_recipe", "load_recipe", "parse_override", "validate_recipe", "with_defaults"]
