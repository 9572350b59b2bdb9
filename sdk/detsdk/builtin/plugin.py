"""The built-in plugin. Factories are lazy strings, so listing them imports no torch."""

from __future__ import annotations

from pathlib import Path

from detsdk.hookspecs import hookimpl

_B = "detsdk.builtin"


@hookimpl
def detsdk_register_backbones(register):
    """Backbones built from torchvision models."""
    register("resnet", f"{_B}.models.resnet:ResNet", description="torchvision ResNet 18/34/50/101")
    register("resnext", f"{_B}.models.resnet:ResNeXt", description="torchvision ResNeXt 50/101")
    register("mobilenet_v3", f"{_B}.models.mobilenet:MobileNetV3", description="torchvision MobileNetV3 large/small")
    register("convnext", f"{_B}.models.convnext:ConvNeXt", description="torchvision ConvNeXt tiny/small/base/large")
    register("swin", f"{_B}.models.swin:SwinTransformer", description="torchvision Swin Transformer t/s/b (v1, v2)")
    register("cspnext", f"{_B}.models.cspnext:CSPNeXt", description="CSPNeXt (RTMDet), MMDetection's names")


@hookimpl
def detsdk_register_necks(register):
    """Feature pyramid network."""
    register("fpn", f"{_B}.models.fpn:FPN", description="Feature Pyramid Network (torchvision.ops)")
    register("cspnext_pafpn", f"{_B}.models.cspnext_pafpn:CSPNeXtPAFPN", description="CSPNeXt PAFPN (RTMDet)")


@hookimpl
def detsdk_register_heads(register):
    """RPN, RoI box and mask heads, dense one-stage heads."""
    register("rpn_head", f"{_B}.models.rpn:RPNHead", description="Region proposal network with anchors")
    register(
        "shared2fc_box_head",
        f"{_B}.models.box_head:Shared2FCBoxHead",
        description="RoI box head: two shared FC layers, class and box predictors",
    )
    register(
        "convfc_box_head",
        f"{_B}.models.box_head:ConvFCBoxHead",
        description="RoI box head: convolutions with norm, then FC layers (torchvision v2 / MMDetection 4conv1fc)",
    )
    register("fcn_mask_head", f"{_B}.models.mask_head:FCNMaskHead", description="Mask R-CNN FCN mask head")
    register("retina_head", f"{_B}.models.retina_head:RetinaHead", description="RetinaNet dense head (focal loss)")
    register("fcos_head", f"{_B}.models.fcos_head:FCOSHead", description="FCOS dense head (centerness, GIoU)")
    register(
        "rtmdet_head",
        f"{_B}.models.rtmdet_head:RTMDetHead",
        description="RTMDet head: shared convs, per-level BN, dynamic soft labels, QFL + GIoU",
    )


@hookimpl
def detsdk_register_detectors(register):
    """Two-stage and one-stage detectors."""
    register("faster_rcnn", f"{_B}.models.faster_rcnn:build_faster_rcnn", description="Faster R-CNN")
    register("mask_rcnn", f"{_B}.models.mask_rcnn:build_mask_rcnn", description="Mask R-CNN")
    register("retinanet", f"{_B}.models.retinanet:build_retinanet", description="RetinaNet (one stage)")
    register("fcos", f"{_B}.models.fcos:build_fcos", description="FCOS (one stage, anchor free)")
    register("rtmdet", f"{_B}.models.rtmdet:build_rtmdet", description="RTMDet (real-time one stage)")


@hookimpl
def detsdk_register_datasets(register):
    """COCO files, the middle format, the synthetic shapes dataset and the repeat/concat wrappers."""
    register("coco", f"{_B}.data.coco:CocoDataset", description="COCO-format annotations (boxes, crowd as ignore)")
    register("shapes", f"{_B}.data.shapes:ShapesDataset", description="Synthetic shapes, written once as COCO")
    register("middle", f"{_B}.data.middle:MiddleDataset", description="MMDetection's middle format (JSON list)")
    register("yolo", f"{_B}.data.yolo:YoloDataset", description="YOLO format (Ultralytics data.yaml, labels/*.txt)")
    register("repeat", f"{_B}.data.wrappers:RepeatDataset", description="A nested dataset repeated N times")
    register("concat", f"{_B}.data.wrappers:ConcatDataset", description="Nested datasets one after another")


@hookimpl
def detsdk_register_transforms(register):
    """Geometric, photometric, crop and occlusion transforms over samples."""
    register("resize", f"{_B}.transforms.geometric:Resize", description="Resize: one scale, a range or a list")
    register("random_flip", f"{_B}.transforms.geometric:RandomFlip", description="Horizontal flip")
    register("pad", f"{_B}.transforms.geometric:Pad", description="Pad to a size or a divisor")
    register(
        "photometric_distortion",
        f"{_B}.transforms.photometric:PhotometricDistortion",
        description="Random brightness, contrast, saturation, hue",
    )
    register("normalize", f"{_B}.transforms.photometric:Normalize", description="Subtract mean, divide by std")
    register("random_crop", f"{_B}.transforms.crop:RandomCrop", description="Random crop (train only)")
    register(
        "min_iou_random_crop",
        f"{_B}.transforms.crop:MinIoURandomCrop",
        description="SSD crop with a minimum IoU per object (train only)",
    )
    register("expand", f"{_B}.transforms.expand:Expand", description="SSD zoom-out onto a mean canvas (train only)")
    register("cutout", f"{_B}.transforms.cutout:CutOut", description="Fill random rectangles with a colour")
    register("mosaic", f"{_B}.transforms.mosaic:Mosaic", description="Mosaic of four samples (train only; cached variant)")
    register("mixup", f"{_B}.transforms.mixup:MixUp", description="MixUp with another sample (train only; cached variant)")
    register("random_resize", f"{_B}.transforms.random_resize:RandomResize", description="Resize by a random ratio")
    register("yolox_hsv", f"{_B}.transforms.yolox_hsv:YOLOXHSVRandomAug", description="YOLOX's random HSV jitter")


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
def detsdk_register_hooks(register):
    """Training hooks for ``train.hooks``."""
    register("early_stopping", f"{_B}.hooks.early_stopping:EarlyStopping",
             description="Stop when a metric has not improved for `patience` evaluations")
    register("pipeline_switch", f"{_B}.hooks.pipeline_switch:PipelineSwitch",
             description="Another training pipeline from an epoch on (YOLOX/RTMDet last epochs)")
    register("mlflow", f"{_B}.hooks.mlflow_tracking:MlflowTracking",
             description="MLflow tracking: recipe as params, losses and metrics, checkpoints and plots")
    register("tensorboard", f"{_B}.loggers.tensorboard:TensorBoardLogger",
             description="TensorBoard event files (what runtime.tensorboard = true adds)")


@hookimpl
def detsdk_register_recipes(register):
    """Recipes shipped with det-sdk, as ``detsdk:<path>.toml``."""
    register("detsdk", str(Path(__file__).parent.parent / "recipes"), description="det-sdk recipes")
