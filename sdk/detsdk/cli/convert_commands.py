"""``sdk convert mmdet``: an MMDetection checkpoint as a det-sdk checkpoint; ``sdk convert mmdet-config``: a config as a recipe."""

from __future__ import annotations

from pathlib import Path

import click

from detsdk.cli.options import debug_option


@click.group("convert")
def convert_group():
    """Convert checkpoints and configs of other libraries to det-sdk checkpoints and recipes."""


@convert_group.command("mmdet")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--recipe", required=True, metavar="RECIPE",
              help="The det-sdk recipe of the same architecture: a .toml file or plugin:path.toml "
                   "(e.g. detsdk:faster_rcnn_r50_fpn_1x_coco.toml).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The det-sdk checkpoint to write.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key.")
@click.option("--strict", is_flag=True, help="Fail, writing nothing, unless every weight is placed and filled.")
@debug_option
def convert_mmdet(checkpoint, recipe, out, overrides, strict):
    """Convert an MMDetection 2.x/3.x CHECKPOINT (Faster R-CNN, Mask R-CNN, RetinaNet, FCOS; ResNet FPN) or 3.x RTMDet.

    Keys are renamed to det-sdk's, the background row moves from last to first, and every
    weight that could not be placed (and every det-sdk weight left unfilled) is listed. The
    checkpoint is read with torch.load(weights_only=True): nothing in it is run.
    """
    from detsdk.engine.interop import MMDETECTION, convert_checkpoint

    report = convert_checkpoint(
        str(checkpoint), str(_recipe_path(recipe)), str(out), tuple(overrides), MMDETECTION, strict
    )
    click.echo(
        f"converted {report.placed} weights of {report.source_format} checkpoint {checkpoint} into det-sdk's "
        f"{report.detector} (num_classes {report.num_classes}): {report.out}"
    )
    for note in report.notes:
        click.echo(f"note: {note}")
    click.echo(f"not placed ({len(report.unplaced)}){':' if report.unplaced else ''}")
    for key in report.unplaced:
        click.echo(f"  {key}")
    click.echo(f"det-sdk weights left at their initialisation ({len(report.unfilled)}){':' if report.unfilled else ''}")
    for key in report.unfilled:
        click.echo(f"  {key}")


@convert_group.command("mmdet-config")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The recipe to write.")
@click.option("--strict", is_flag=True, help="Fail, writing nothing, if any config key could not be carried over.")
@debug_option
def convert_mmdet_config_command(config, out, strict):
    """Convert an MMDetection 2.x or 3.x CONFIG (.py, with its _base_ files) into a det-sdk recipe.

    The config is read as data with Python's ast: nothing in it is imported or run, and a
    call, import or expression that would need running is refused with its file and line.
    Every key that did not carry over is printed with the reason and written as a comment at
    the top of the recipe; --strict makes any of them an error (exit 2).
    """
    from detsdk.migrate.ledger import UnsupportedConfigError
    from detsdk.migrate.mmdet_config import convert_mmdet_config, write_recipe

    migration = convert_mmdet_config(config)
    for note in migration.notes:
        click.echo(f"note: {note}")
    click.echo(f"not carried over ({len(migration.unmapped)}){':' if migration.unmapped else ''}")
    for item in migration.unmapped:
        click.echo(f"  {item}")
    if strict and migration.unmapped:
        raise UnsupportedConfigError(
            f"{config}: --strict: {len(migration.unmapped)} keys not carried over ({migration.unmapped[0]}"
            f"{', ...' if len(migration.unmapped) > 1 else ''}); nothing written"
        )
    write_recipe(migration, out)
    click.echo(f"wrote {out} (MMDetection {migration.version} config {config}, {len(migration.files)} files read); "
               f"check it with: sdk recipe show {out}")
    _check_recipe(out)


def _check_recipe(path: Path) -> None:
    """Say so when the written recipe names components or keys the installed det-sdk and plugins lack."""
    from detsdk.errors import DetSDKError
    from detsdk.recipe import load_recipe, validate_recipe

    try:
        validate_recipe(load_recipe(path))
    except DetSDKError as exc:
        click.echo(f"warning: {path} does not validate with the installed components yet: {exc}")


def _recipe_path(recipe: str) -> Path:
    """A recipe file, or the file a ``plugin:path.toml`` reference names."""
    if ":" in recipe and not Path(recipe).exists():
        from detsdk.plugins import get_registry

        return get_registry().recipe_path(recipe, where="--recipe")
    return Path(recipe)


COMMANDS = [convert_group]
