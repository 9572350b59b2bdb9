"""``sdk convert mmdet``: an MMDetection 2.x checkpoint as a det-sdk checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from detsdk.cli.options import debug_option


@click.group("convert")
def convert_group():
    """Convert checkpoints of other libraries to det-sdk checkpoints."""


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
    """Convert an MMDetection 2.x CHECKPOINT (Faster R-CNN, Mask R-CNN, RetinaNet; ResNet FPN) or 3.x RTMDet.

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


def _recipe_path(recipe: str) -> Path:
    """A recipe file, or the file a ``plugin:path.toml`` reference names."""
    if ":" in recipe and not Path(recipe).exists():
        from detsdk.plugins import get_registry

        return get_registry().recipe_path(recipe, where="--recipe")
    return Path(recipe)


COMMANDS = [convert_group]
