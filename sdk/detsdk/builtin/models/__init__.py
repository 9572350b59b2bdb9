"""Built-in model components: ResNet backbone, FPN neck, RPN and box heads, Faster R-CNN.

Registered by ``detsdk.builtin.plugin`` as ``resnet``, ``fpn``, ``rpn_head``,
``shared2fc_box_head`` and ``faster_rcnn``; importing this package imports torch.
"""

from detsdk.builtin.models.box_head import Shared2FCBoxHead
from detsdk.builtin.models.faster_rcnn import FasterRCNN, build_faster_rcnn
from detsdk.builtin.models.fpn import FPN
from detsdk.builtin.models.resnet import ResNet
from detsdk.builtin.models.rpn import RPNHead

__all__ = ["FPN", "FasterRCNN", "RPNHead", "ResNet", "Shared2FCBoxHead", "build_faster_rcnn"]
