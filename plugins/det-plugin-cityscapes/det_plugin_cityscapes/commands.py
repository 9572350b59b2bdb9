"""``sdk cityscapes``: tools for the Cityscapes dataset (imports nothing heavy until a command runs)."""

from __future__ import annotations

import click

from det_plugin_cityscapes.layout import ANNOTATION_SOURCES


@click.group("cityscapes")
def cityscapes_group():
    """Cityscapes tools (det-plugin-cityscapes)."""


@cityscapes_group.command("convert")
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the JSON files.")
@click.option("--split", "splits", multiple=True, help="A split to convert (repeatable); default: every split folder.")
@click.option(
    "--annotations", type=click.Choice(ANNOTATION_SOURCES), default="instance_ids", show_default=True,
    help="Read *_gtFine_instanceIds.png, or render *_gtFine_polygons.json.",
)
def convert_command(root, out_dir, splits, annotations):
    """Write COCO-format JSON per split of the Cityscapes tree at ROOT (as MMDetection's converter).

    Files are named instancesonly_filtered_gtFine_<split>.json; train from them with
    the `coco` dataset, images = "ROOT/leftImg8bit/<split>".
    """
    from det_plugin_cityscapes.convert import convert_to_coco

    for path in convert_to_coco(root, out_dir, splits=splits or None, annotations=annotations):
        click.echo(f"wrote {path}")
