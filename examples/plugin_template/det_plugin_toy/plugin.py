"""Hook implementations. Factories are "module:attr" strings: listing plugins imports no torch."""

from detsdk import hookimpl


@hookimpl
def detsdk_register_backbones(register):
    """A four-stage convolutional backbone, small enough for a CPU."""
    register("toy_convnet", "det_plugin_toy.components:ToyConvNet", description="Tiny 4-stage ConvNet")


@hookimpl
def detsdk_register_datasets(register):
    """Bright squares and discs on a dark background, generated in memory."""
    register("toy_blocks", "det_plugin_toy.components:ToyBlocks", description="In-memory squares and discs")


@hookimpl
def detsdk_register_transforms(register):
    """Gaussian pixel noise on uint8 images."""
    register("toy_noise", "det_plugin_toy.components:ToyNoise", description="Add Gaussian noise")


@hookimpl
def detsdk_register_schedulers(register):
    """Linear decay to zero."""
    register("toy_linear", "det_plugin_toy.components:toy_linear", description="Linear decay")


@hookimpl
def detsdk_register_hooks(register):
    """A training hook: the loss of every iteration as CSV, and a stop when it diverges."""
    register("toy_loss_csv", "det_plugin_toy.hooks:ToyLossCsv", description="Loss CSV; stop above a threshold")
