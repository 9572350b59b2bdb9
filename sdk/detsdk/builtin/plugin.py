"""The built-in plugin. Factories are lazy strings, so listing them imports no torch."""

from __future__ import annotations

from pathlib import Path

from detsdk.hookspecs import hookimpl

_B = "detsdk.builtin"


@hookimpl
def detsdk_register_backbones(register):
    """ResNet from torchvision."""
    register("resnet", f"{_B}.models.resnet:ResNet", description="torchvision ResNet 18/34/50/101")


@hookimpl
def detsdk_register_necks(register):
    """Feature pyramid network."""
    register("fpn", f"{_B}.models.fpn:FPN", description="Feature Pyramid Network (torchvision.ops)")


@hookimpl
def detsdk_register_heads(register):
    """Heads of the two-stage detector."""
    register("rpn_head", f"{_B}.models.rpn:RPNHead", description="Region proposal network with anchors")
    register(
        "shared2fc_box_head",
        f"{_B}.models.box_head:Shared2FCBoxHead",
        description="RoI box head: two shared FC layers, class and box predictors",
    )


@hookimpl
def detsdk_register_detectors(register):
    """Two-stage detectors."""
    register("faster_rcnn", f"{_B}.models.faster_rcnn:build_faster_rcnn", description="Faster R-CNN")


@hookimpl
def detsdk_register_datasets(register):
    """COCO files and the synthetic shapes dataset."""
    register("coco", f"{_B}.data.coco:CocoDataset", description="COCO-format annotations (boxes, crowd as ignore)")
    register("shapes", f"{_B}.data.shapes:ShapesDataset", description="Synthetic shapes, written once as COCO")


@hookimpl
def detsdk_register_transforms(register):
    """Geometric and photometric transforms over samples."""
    register("resize", f"{_B}.transforms.geometric:Resize", description="Resize, one scale or a range")
    register("random_flip", f"{_B}.transforms.geometric:RandomFlip", description="Horizontal flip")
    register("pad", f"{_B}.transforms.geometric:Pad", description="Pad to a size or a divisor")
    register(
        "photometric_distortion",
        f"{_B}.transforms.photometric:PhotometricDistortion",
        description="Random brightness, contrast, saturation, hue",
    )
    register("normalize", f"{_B}.transforms.photometric:Normalize", description="Subtract mean, divide by std")


@hookimpl
def detsdk_register_schedulers(register):
    """Per-iteration LR schedules with linear warmup."""
    register("step", f"{_B}.schedulers:step", description="Step decay at milestones (epochs or iterations)")
    register("cosine", f"{_B}.schedulers:cosine", description="Cosine annealing")
    register("poly", f"{_B}.schedulers:poly", description="Polynomial decay")
    register("constant", f"{_B}.schedulers:constant", description="Constant LR (after warmup)")


@hookimpl
def detsdk_register_optimizers(register):
    """Optimizers from torch.optim."""
    register("sgd", f"{_B}.optimizers:sgd", description="SGD with momentum")
    register("adamw", f"{_B}.optimizers:adamw", description="AdamW")


@hookimpl
def detsdk_register_metrics(register):
    """COCO-style evaluation with pycocotools."""
    register("coco", f"{_B}.evaluation.coco_metric:CocoMetric", description="COCO AP with pycocotools")


@hookimpl
def detsdk_register_recipes(register):
    """Recipes shipped with det-sdk, as ``detsdk:<path>.toml``."""
    register("detsdk", str(Path(__file__).parent.parent / "recipes"), description="det-sdk recipes")
