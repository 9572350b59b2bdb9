"""Hook implementations. Factories are "module:attr" strings: listing plugins imports no torch."""

from pathlib import Path

from detsdk import hookimpl


@hookimpl
def detsdk_register_datasets(register):
    """WIDER FACE's official annotation text files."""
    register(
        "widerface", "det_plugin_widerface.dataset:WiderFaceDataset", description="WIDER FACE (invalid faces as ignore)"
    )


@hookimpl
def detsdk_register_metrics(register):
    """AP at IoU 0.5, plus the official easy/medium/hard AP from the .mat ground truth."""
    register("widerface", "det_plugin_widerface.metric:WiderFaceMetric", description="WIDER FACE AP, easy/medium/hard")


@hookimpl
def detsdk_register_recipes(register):
    """Recipes shipped with the plugin, as ``widerface:<path>.toml``."""
    register("widerface", str(Path(__file__).parent / "recipes"), description="WIDER FACE recipes")
