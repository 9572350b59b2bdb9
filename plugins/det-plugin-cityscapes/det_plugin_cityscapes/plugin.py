"""Hook implementations. Factories are "module:attr" strings: listing plugins imports no torch."""

from __future__ import annotations

from pathlib import Path

from detsdk import hookimpl

_P = "det_plugin_cityscapes"


@hookimpl
def detsdk_register_datasets(register):
    """Cityscapes read from its official layout."""
    register(
        "cityscapes",
        f"{_P}.dataset:CityscapesDataset",
        description="Cityscapes fine instances (8 classes, crowd regions, masks) from leftImg8bit/ and gtFine/",
    )


@hookimpl
def detsdk_register_metrics(register):
    """The official instance-level AP next to COCO AP."""
    register(
        "cityscapes",
        f"{_P}.metric:CityscapesMetric",
        description="Cityscapes AP/AP50 (cityscapesscripts' evaluator) plus COCO bbox/segm AP",
    )


@hookimpl
def detsdk_register_recipes(register):
    """Recipes shipped with the plugin, as ``cityscapes:<file>.toml``."""
    register("cityscapes", str(Path(__file__).parent / "recipes"), description="Cityscapes recipes")


@hookimpl
def detsdk_register_commands(cli):
    """``sdk cityscapes convert``."""
    from det_plugin_cityscapes.commands import cityscapes_group

    cli.add_command(cityscapes_group)
