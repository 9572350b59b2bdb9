"""The recipe check: every recipe a plugin ships loads, merges its bases and validates."""

from __future__ import annotations

from pathlib import Path

from detsdk.testing.results import CheckResult, error_text, failed, passed


def shipped_recipes(folder: str | Path) -> list[Path]:
    """The recipes in a plugin's recipe folder, bases (folders starting with ``_``) left out."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*.toml") if not p.relative_to(folder).parts[0].startswith("_"))


def check_recipes(component: str, plugin: str, folder: str | Path) -> list[CheckResult]:
    """Each shipped recipe, as ``plugin:relative/path.toml``, resolves (bases, defaults) and validates."""
    from detsdk.recipe import load_recipe, validate_recipe

    recipes = shipped_recipes(folder)
    if not recipes:
        return [failed(component, "recipes", f"the folder {folder} holds no recipe (.toml outside _ folders)")]
    results = []
    for path in recipes:
        reference = f"{plugin}:{path.relative_to(folder).as_posix()}"
        try:
            validate_recipe(load_recipe(reference))
        except Exception as exc:
            results.append(failed(component, reference, f"does not resolve: {error_text(exc)}"))
        else:
            results.append(passed(component, reference, "resolves and validates"))
    return results
