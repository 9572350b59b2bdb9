"""``sdk data``: look at, check and convert datasets (MMDetection's dataset tools).

The work happens in ``detsdk.data.check``, ``detsdk.data.browse`` and
``detsdk.data.stats``; these commands load the recipe and print.
"""

from __future__ import annotations

from pathlib import Path

import click

from detsdk.cli.options import debug_option

SPLITS = ("train", "val", "test")


@click.group("data")
def data_group():
    """Check, browse, summarise and convert the datasets a recipe names."""


def dataset_options(function):
    """RECIPE, ``--split`` and ``--set``, shared by the commands that read one split of a recipe."""
    function = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                            help="Override a recipe key, e.g. --set data.train.ann_file=x.json (repeatable).")(function)
    function = click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True,
                            help="Which data.<split> table to read.")(function)
    function = click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))(function)
    return debug_option(function)


def split_spec(recipe: Path, overrides: tuple[str, ...], split: str) -> tuple[dict, str]:
    """The validated ``data.<split>`` table of a recipe and its key path."""
    from detsdk.errors import RecipeError
    from detsdk.recipe import load_recipe, validate_recipe, with_defaults

    loaded = load_recipe(recipe, overrides)
    validate_recipe(loaded)
    data = with_defaults(loaded.data)["data"]
    if not isinstance(data.get(split), dict):
        present = [s for s in SPLITS if isinstance(data.get(s), dict)]
        raise RecipeError(f"{recipe}: no data.{split} table (the recipe has {', '.join(present) or 'none'})")
    return data[split], f"data.{split}"


@data_group.command("check")
@dataset_options
@click.pass_context
def check_command(ctx, recipe, split, overrides):
    """Check every image and annotation of a split; exit 2 listing each problem by file."""
    from detsdk.data.check import check_split
    from detsdk.engine.build import build_dataset

    spec, where = split_spec(recipe, overrides, split)
    report = check_split(spec, where, build_dataset)
    click.echo(f"{where}: {report.source}, {report.num_images} images, {len(report.classes)} classes")
    click.echo(report.summary_table())
    click.echo(report.class_count_note())
    if report.ok:
        click.echo("no problems found")
        return
    by_file = report.by_file()
    click.echo(f"{len(report.problems)} problems in {len(by_file)} files:")
    for file, messages in by_file.items():
        click.echo(file)
        for message in messages:
            click.echo(f"  - {message}")
    ctx.exit(2)


@data_group.command("browse")
@dataset_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the drawn images.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many samples.")
@click.option("--seed", default=0, show_default=True, help="Seed for the pipeline's random transforms.")
def browse_command(recipe, split, overrides, out_dir, limit, seed):
    """Draw samples after the split's pipeline, with their boxes, classes and masks."""
    import numpy as np

    from detsdk.data.browse import browse
    from detsdk.engine.build import build_pipeline_dataset

    spec, where = split_spec(recipe, overrides, split)
    np.random.seed(seed)
    written = browse(build_pipeline_dataset(spec, where), out_dir, limit)
    click.echo(f"{len(written)} images drawn in {out_dir}")


@data_group.command("stats")
@dataset_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the PNG histograms.")
def stats_command(recipe, split, overrides, out_dir):
    """Print class counts and box sizes; write class, size and aspect-ratio histograms."""
    from detsdk.data.stats import collect_stats, write_plots
    from detsdk.engine.build import build_dataset

    spec, where = split_spec(recipe, overrides, split)
    stats = collect_stats(build_dataset(spec, where))
    click.echo(f"{where} ({spec['type']})")
    click.echo(stats.table())
    for path in write_plots(stats, out_dir):
        click.echo(f"wrote {path}")


from detsdk.cli.data_convert import convert  # noqa: E402  (in its own module; registered on the group here)

data_group.add_command(convert)

COMMANDS = [data_group]
