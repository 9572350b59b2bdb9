"""MMDetection 3.x's RTMDet (``CSPNeXt``, ``CSPNeXtPAFPN``, ``RTMDetSepBNHead``) as det-sdk's ``rtmdet``.

The components are #12's: backbone ``cspnext``, neck ``cspnext_pafpn``, head ``rtmdet_head``,
detector ``rtmdet``; their parameters keep MMDetection's names.
"""

from __future__ import annotations

from typing import Any

from detsdk.migrate.ledger import Node, UnsupportedConfigError, type_of


def map_rtmdet(model: Node, train: dict[str, Any], pretrained) -> dict[str, Any]:
    """The ``[model]`` table of an RTMDet config; SyncBN anywhere sets ``train.sync_bn``.

    ``pretrained(backbone, model)`` reads ``init_cfg`` as for the other backbones.
    """
    backbone, neck, head = model.child("backbone"), model.child("neck"), model.child("bbox_head")
    for part, name, wanted in ((backbone, "backbone", "CSPNeXt"), (neck, "neck", "CSPNeXtPAFPN"),
                               (head, "bbox_head", "RTMDetSepBNHead")):
        kind = type_of(part)
        if kind != wanted:
            raise UnsupportedConfigError(f"{model.at(name)}: RTMDet with '{kind or 'no ' + name}' is not available "
                                         f"in det-sdk (it has {wanted})")
        _norm_and_act(part, train)
    out: dict[str, Any] = {"type": "rtmdet", "num_classes": "auto"}
    out["backbone"] = {"type": "cspnext", **_copy(backbone, ("arch", "deepen_factor", "widen_factor", "expand_ratio",
                                                             "channel_attention", "frozen_stages", "norm_eval",
                                                             "out_indices", "spp_kernel_sizes"))}
    out["backbone"]["pretrained"] = pretrained(backbone, model)
    backbone.expect("use_depthwise", False, "det-sdk's cspnext takes depthwise = true for it")
    neck.ignore("in_channels")
    out["neck"] = {"type": "cspnext_pafpn", **_copy(neck, ("out_channels", "num_csp_blocks", "expand_ratio"))}
    head.ignore("in_channels", "num_classes", "with_objectness")
    head.expect("with_objectness", False, "det-sdk's rtmdet_head has no objectness branch")
    out["head"] = {"type": "rtmdet_head", **_copy(head, ("feat_channels", "stacked_convs", "share_conv",
                                                         "exp_on_reg", "pred_kernel_size"))}
    points = head.child("anchor_generator")
    if points is not None:
        out["head"]["strides"] = list(points.get("strides", [8, 16, 32]))
        points.ignore("type", "offset")
    coder = head.child("bbox_coder")
    if coder is not None:
        coder.ignore("type")
    loss_cls, loss_bbox = head.child("loss_cls"), head.child("loss_bbox")
    if loss_cls is not None:
        out["head"]["qfl_beta"] = loss_cls.get("beta", 2.0)
        out["head"]["loss_cls_weight"] = loss_cls.get("loss_weight", 1.0)
        loss_cls.ignore("type", "use_sigmoid")
    if loss_bbox is not None:
        out["head"]["loss_bbox_weight"] = loss_bbox.get("loss_weight", 2.0)
        loss_bbox.ignore("type")
    train_cfg, test_cfg = model.child("train_cfg"), model.child("test_cfg")
    if train_cfg is not None:
        assigner = train_cfg.child("assigner")
        if assigner is not None:
            out["head"].update(_copy(assigner, ("topk", "soft_center_radius", "iou_weight")))
            assigner.ignore("type")
        train_cfg.ignore("allowed_border", "pos_weight", "debug")
    if test_cfg is not None:
        out["head"].update(_copy(test_cfg, ("nms_pre", "score_thr", "max_per_img")))
        nms = test_cfg.child("nms")
        if nms is not None:
            out["head"]["nms_iou"] = nms.get("iou_threshold", 0.65)
            nms.ignore("type")
        test_cfg.ignore("min_bbox_size")
    model.ignore("data_preprocessor")
    return out


def _copy(node: Node, keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: list(v) if isinstance(v := node.get(key), tuple) else v for key in keys if key in node}


def _norm_and_act(part: Node, train: dict[str, Any]) -> None:
    norm = part.child("norm_cfg")
    if norm is not None:
        if type_of(norm) == "SyncBN":
            train["sync_bn"] = True
        norm.ignore("momentum", "eps", "requires_grad")
    act = part.child("act_cfg")
    if act is not None:
        act.expect("type", "SiLU", "det-sdk's RTMDet parts use SiLU")
        act.ignore("inplace")
