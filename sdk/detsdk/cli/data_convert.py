"""``sdk data convert``: any registered dataset's annotations as one COCO JSON file.

Generic: the dataset is built from the registry like a recipe's dataset
table (``--from TYPE --param key=value ...``, or a recipe's ``data.<split>``),
then written from its annotations without decoding an image when the
dataset has ``get_annotations``. Cityscapes goes through its plugin's own
converter, which keeps the instance polygons.

    sdk data convert --from voc --param root=data/VOCdevkit/VOC2007 --param split=test --out voc07_test.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from detsdk.cli.options import debug_option
from detsdk.errors import DataError, RecipeError

TARGETS = ("coco", "yolo")


@click.command("convert")
@click.option("--from", "source", metavar="TYPE",
              help="The dataset type to read: voc, widerface, middle, cityscapes, coco, ... (sdk list dataset).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A parameter of the dataset, as in a recipe table (values are TOML): --param split=test.")
@click.option("--recipe", metavar="RECIPE", help="Take the dataset table from this recipe instead (with --split).")
@click.option("--split", default="train", show_default=True, help="The recipe's data.<split> table to convert.")
@click.option("--to", "target", type=click.Choice(TARGETS), default="coco", show_default=True, help="Output format.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="The JSON file to write (for cityscapes and --to yolo: a folder).")
@click.option("--images", "images_root", type=click.Path(path_type=Path),
              help="Write file_name relative to this folder (then use images = this folder in a coco table).")
@debug_option
def convert(source, params, recipe, split, target, out, images_root):
    """Convert a dataset's annotations to COCO JSON (boxes, classes, ignore regions as iscrowd = 1), or to YOLO.

    \b
    sdk data convert --from voc --param root=data/VOCdevkit/VOC2007 --param split=trainval --out voc07.json
    sdk data convert --from widerface --param ann_file=.../wider_face_val_bbx_gt.txt \\
        --param images=data/WIDERFace/WIDER_val/images --out widerface_val.json
    sdk data convert --from middle --param ann_file=train.json --param 'class_names=["cat","dog"]' --out train_coco.json
    sdk data convert --recipe recipe.toml --split val --out val.json
    sdk data convert --from yolo --param data_yaml=coco8/data.yaml --param split=val --out val.json
    sdk data convert --from coco --param ann_file=val.json --param images=val2017 --to yolo --split val --out yolo_tree
    sdk data convert --from cityscapes --param root=data/cityscapes --out data/cityscapes/annotations
    """
    spec = _dataset_table(source, params, recipe, split)
    if spec["type"] == "cityscapes":
        written = _convert_cityscapes(spec, out)
        for path in written:
            click.echo(f"wrote {path}")
        return
    from detsdk.engine.build import build_dataset

    from detsdk.builtin.data.wrappers import RepeatDataset

    dataset = build_dataset(spec, f"data.{split}")
    while isinstance(dataset, RepeatDataset):  # its repeats would be the same images again
        click.echo(f"note: {spec['type']} repeats its images {dataset.times} times; each is written once")
        dataset = dataset.dataset
    if target == "yolo":
        from detsdk.builtin.data.yolo_writer import write_yolo

        written = write_yolo(dataset, out, split)
        click.echo(
            f"wrote {written.data_yaml}: {written.images} images, {written.boxes} boxes in images/{split} and "
            f"labels/{split}, from {spec['type']}"
            + (f"; {written.crowd_skipped} ignore regions left out (YOLO has none)" if written.crowd_skipped else "")
        )
        return
    from detsdk.data.coco_export import dataset_to_coco

    coco = dataset_to_coco(dataset, images_root=str(images_root) if images_root else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text(json.dumps(coco), encoding="utf-8")
    temporary.replace(out)
    crowd = sum(a["iscrowd"] for a in coco["annotations"])
    click.echo(
        f"wrote {out}: {len(coco['images'])} images, {len(coco['annotations'])} boxes ({crowd} ignore regions as "
        f"iscrowd = 1), {len(coco['categories'])} categories, from {spec['type']}"
    )


def _dataset_table(source: str | None, params: tuple[str, ...], recipe: str | None, split: str) -> dict:
    """The dataset table to build: a recipe's ``data.<split>`` or ``--from`` alone, ``--param`` over it; validated."""
    from detsdk.recipe import Recipe, load_recipe, parse_override, validate_recipe, with_defaults
    from detsdk.recipe.schema import DATA_SPLITS

    if split not in DATA_SPLITS:
        raise RecipeError(f"--split {split!r}: expected one of {', '.join(DATA_SPLITS)}")
    spec: dict[str, Any] = {}
    sources = {}
    if recipe:
        from detsdk.cli.convert_commands import _recipe_path

        loaded = load_recipe(_recipe_path(recipe))
        table = with_defaults(loaded.data)["data"].get(split)
        if table is None:
            raise RecipeError(f"{recipe}: no data.{split} table to convert")
        spec = {k: v for k, v in table.items() if k != "pipeline"}
        sources = dict(loaded.sources)
    elif not source:
        raise RecipeError("sdk data convert: give --from TYPE (with --param KEY=VALUE ...) or --recipe RECIPE")
    if source:
        if recipe and spec.get("type") != source:
            spec = {}  # another type: the recipe's parameters would not fit it
        spec["type"] = source
        sources[f"data.{split}.type"] = "--from"
    for param in params:
        key, value = parse_override(param)
        if key == "type":
            raise RecipeError(f"--param {param}: give the dataset type with --from")
        spec[key] = value
        sources[f"data.{split}.{key}"] = f"--param {param}"
    if spec["type"] != "cityscapes":
        validate_recipe(Recipe(data={"data": {split: spec}}, sources={f"data.{split}": "--from/--param", **sources}))
    return spec


def _convert_cityscapes(spec: dict, out: Path) -> list[Path]:
    """Cityscapes' own converter (MMDetection's instancesonly_filtered_gtFine_<split>.json files)."""
    try:
        from det_plugin_cityscapes.convert import convert_to_coco
    except ImportError:
        raise DataError("--from cityscapes needs the Cityscapes plugin: pip install det-plugin-cityscapes") from None
    unknown = sorted(set(spec) - {"type", "root", "splits", "split", "annotations"})
    if unknown or "root" not in spec:
        raise RecipeError(
            "--from cityscapes takes --param root=DIR (required), splits=[...] or split=NAME, annotations=...; "
            f"got {', '.join(unknown) or 'no root'}"
        )
    splits = spec.get("splits") or ([spec["split"]] if "split" in spec else None)
    extra = {"annotations": spec["annotations"]} if "annotations" in spec else {}
    return convert_to_coco(spec["root"], out, splits=splits, **extra)
