"""Hook implementations. Factories are "module:attr" strings: listing plugins imports no torch."""

from pathlib import Path

from detsdk import hookimpl


@hookimpl
def detsdk_register_datasets(register):
    """Pascal VOC XML annotations in the official VOCdevkit layout."""
    register("voc", "det_plugin_voc.dataset:VocDataset", description="Pascal VOC XML (difficult as ignore)")


@hookimpl
def detsdk_register_metrics(register):
    """VOC mAP: the 2007 11-point and the 2010+ area AP, per class, with recall."""
    register("voc", "det_plugin_voc.metric:VocMetric", description="VOC mAP (area or 11-point), per-class AP")


@hookimpl
def detsdk_register_recipes(register):
    """Recipes shipped with the plugin, as ``voc:<path>.toml``."""
    register("voc", str(Path(__file__).parent / "recipes"), description="Pascal VOC recipes")
