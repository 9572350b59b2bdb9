"""MMDetection's ``model`` (detector, backbone, neck, heads, train/test settings) as a recipe's ``[model]``.

Faster R-CNN, Mask R-CNN, RetinaNet and FCOS on ResNet/ResNeXt + FPN map to det-sdk's
``faster_rcnn``, ``mask_rcnn``, ``retinanet`` and ``fcos``. A detector, backbone, neck or head
det-sdk lacks (Cascade R-CNN, DCN, Guided Anchoring, ...) raises ``UnsupportedConfigError``.
"""

from __future__ import annotations

from typing import Any

from detsdk.migrate.ledger import Node, UnsupportedConfigError, type_of
from detsdk.migrate.mmdet_rtmdet import map_rtmdet

DETECTORS = {"FasterRCNN": "faster_rcnn", "MaskRCNN": "mask_rcnn", "RetinaNet": "retinanet", "FCOS": "fcos",
             "RTMDet": "rtmdet"}
RESNET_DEPTHS = (18, 34, 50, 101)
# MMDetection's pretrained names det-sdk can fetch (torchvision's weights API).
PRETRAINED = {f"torchvision://resnet{d}": "IMAGENET1K_V1" for d in RESNET_DEPTHS} | {
    "torchvision://resnext50_32x4d": "IMAGENET1K_V1", "torchvision://resnext101_32x8d": "IMAGENET1K_V1",
}
FPN_EXTRAS = {False: "maxpool", "on_input": "p6p7", True: "p6p7", "on_output": "p6p7_on_p5"}
DERIVED = "det-sdk derives it from the parts it connects"


def unsupported(path: str, kind: str, name: str, have: str) -> UnsupportedConfigError:
    """The error for a model part det-sdk has no counterpart for."""
    return UnsupportedConfigError(f"{path}: {kind} '{name}' is not available in det-sdk (it has {have})")


def map_model(model: Node, runtime: dict[str, Any]) -> dict[str, Any]:
    """The recipe's ``[model]`` table; ``runtime`` collects ``train.*`` keys the model implies (sync_bn)."""
    name = type_of(model)
    if name not in DETECTORS:
        raise unsupported(model.at("type"), "detector", name, ", ".join(DETECTORS))
    if name == "RTMDet":  # #12's components (detsdk.migrate.mmdet_rtmdet)
        return map_rtmdet(model, runtime, _pretrained)
    out: dict[str, Any] = {"type": DETECTORS[name], "num_classes": "auto"}
    model.ignore("data_preprocessor")  # read with the pipelines (detsdk.migrate.mmdet_data)
    backbone = model.child("backbone")
    if backbone is None:
        raise UnsupportedConfigError(f"{model.path}: no backbone")
    out["backbone"] = map_backbone(backbone, model, runtime)
    neck = model.child("neck")
    if neck is not None:
        out["neck"] = map_neck(neck)
    train_cfg, test_cfg = model.child("train_cfg"), model.child("test_cfg")
    if name in ("FasterRCNN", "MaskRCNN"):
        out["rpn_head"] = map_rpn(model.child("rpn_head"), _sub(train_cfg, "rpn"), _sub(train_cfg, "rpn_proposal"),
                                  _sub(test_cfg, "rpn"), model.path)
        roi = model.child("roi_head")
        if roi is None:
            raise UnsupportedConfigError(f"{model.path}: no roi_head")
        roi_type = type_of(roi)
        if roi_type != "StandardRoIHead":
            raise unsupported(roi.at("type"), "RoI head", roi_type, "StandardRoIHead")
        rcnn_train, rcnn_test = _sub(train_cfg, "rcnn"), _sub(test_cfg, "rcnn")
        out["box_head"] = map_box_head(roi, rcnn_train, rcnn_test)
        if name == "MaskRCNN":
            out["mask_head"] = map_mask_head(roi, rcnn_train, rcnn_test)
    else:
        head = model.child("bbox_head")
        if head is None:
            raise UnsupportedConfigError(f"{model.path}: no bbox_head")
        mapper = map_retina_head if name == "RetinaNet" else map_fcos_head
        out["head"] = mapper(head, train_cfg, test_cfg)
    for extra in ("train_cfg", "test_cfg"):
        if model.peek(extra) is None:
            model.ignore(extra)
    return out


def _sub(node: Node | None, key: str) -> Node | None:
    return node.child(key) if node is not None else None


def _num_classes(head: Node) -> None:
    value = head.get("num_classes")
    if value is not None:
        head.ledger.note(f"{head.at('num_classes')} = {value}: the recipe says num_classes = \"auto\" (the "
                         "training dataset's class count; det-sdk stops before training when they disagree)")


# -- backbone and neck ------------------------------------------------------------------
def map_backbone(backbone: Node, model: Node, runtime: dict[str, Any]) -> dict[str, Any]:
    """ResNet / ResNeXt: depth, frozen_stages, out_indices, norm and pretrained weights."""
    name = type_of(backbone)
    if name not in ("ResNet", "ResNeXt"):
        raise unsupported(backbone.at("type"), "backbone", name, "ResNet, ResNeXt")
    for dcn_key in ("dcn", "stage_with_dcn", "plugins"):
        if backbone.peek(dcn_key):
            raise unsupported(backbone.at(dcn_key), "backbone option", f"{dcn_key} (DCN / plugins)", "plain ResNets")
    backbone.ignore("stage_with_dcn")
    depth = backbone.get("depth", 50)
    if depth not in RESNET_DEPTHS:
        raise unsupported(backbone.at("depth"), "ResNet depth", str(depth), ", ".join(map(str, RESNET_DEPTHS)))
    out: dict[str, Any] = {"type": "resnext" if name == "ResNeXt" else "resnet", "depth": depth}
    if name == "ResNeXt":
        out["groups"] = backbone.get("groups", 1)
        out["width_per_group"] = backbone.get("base_width", 4)
    backbone.expect("num_stages", 4, "det-sdk's ResNet has 4 stages")
    backbone.expect("strides", [1, 2, 2, 2], "det-sdk's ResNet uses the standard strides")
    backbone.expect("dilations", [1, 1, 1, 1], "det-sdk's ResNet is not dilated")
    backbone.expect("deep_stem", False, "det-sdk's ResNet has the 7x7 stem")
    backbone.expect("avg_down", False, "det-sdk's ResNet downsamples with a strided 1x1 conv")
    backbone.expect("with_cp", False, "no gradient checkpointing in det-sdk's ResNet")
    backbone.expect("zero_init_residual", True, "det-sdk's ResNet keeps torchvision's initialisation")
    out["frozen_stages"] = backbone.get("frozen_stages", -1)
    out["norm"] = _backbone_norm(backbone, runtime)
    out["pretrained"] = _pretrained(backbone, model)
    out["out_indices"] = list(backbone.get("out_indices", [0, 1, 2, 3]))
    style = backbone.get("style", "pytorch")
    if style == "caffe":
        backbone.ledger.skip(backbone.at("style"), "'caffe' (stride 2 in the first 1x1 conv of a stage): det-sdk's "
                             "ResNet is torchvision's, stride 2 in the 3x3 conv ('pytorch'); caffe-style weights "
                             "load (same names) but compute slightly different features")
    return out


def _backbone_norm(backbone: Node, runtime: dict[str, Any]) -> str:
    norm = backbone.child("norm_cfg")
    norm_type = type_of(norm) or "BN"
    requires_grad = norm.get("requires_grad", True) if norm is not None else True
    norm_eval = backbone.get("norm_eval", True)
    if norm is not None:
        norm.ignore("eps", "momentum")
        if norm_type == "GN":
            norm.ignore("num_groups")
    if norm_type == "GN":
        return "gn"
    if norm_type == "SyncBN":
        runtime["sync_bn"] = True
        norm_type = "BN"
    if norm_type != "BN":
        raise unsupported(norm.at("type"), "backbone norm", norm_type, "BN, SyncBN, GN")
    if norm_eval or not requires_grad:
        if requires_grad:
            backbone.ledger.note(f"{backbone.path}: BN with norm_eval=True (statistics fixed, scale and shift "
                                 "trained) is det-sdk's frozen_bn, which fixes the scale and shift too")
        return "frozen_bn"
    return "bn"


def _pretrained(backbone: Node, model: Node) -> str:
    init = backbone.child("init_cfg")
    checkpoint = None
    where = ""
    if init is not None:
        if type_of(init) != "Pretrained":
            init.ledger.skip(init.at("type"), "only init_cfg type 'Pretrained' has a det-sdk counterpart")
            return ""
        checkpoint, where = init.get("checkpoint"), init.at("checkpoint")
        init.ignore("prefix")
    elif backbone.peek("init_cfg", "absent") is None:
        backbone.ignore("init_cfg")
    for holder in (backbone, model):  # MMDetection 2.x: pretrained= on the backbone or the model
        if holder.peek("pretrained"):
            checkpoint, where = holder.get("pretrained"), holder.at("pretrained")
        holder.ignore("pretrained")
    if not checkpoint:
        return ""
    if checkpoint in PRETRAINED:
        return PRETRAINED[checkpoint]
    if checkpoint.startswith(("http://", "https://")):
        return downloaded(backbone, checkpoint, where)
    if "://" in checkpoint:
        backbone.ledger.skip(where, f"{checkpoint!r}: det-sdk fetches only torchvision's weights; download the "
                             "file and set model.backbone.pretrained to its path")
        return ""
    return checkpoint  # a local file


def downloaded(node: Node, url: str, where: str) -> str:
    """Where a checkpoint det-sdk cannot fetch is expected once downloaded: ``checkpoints/<file name>``."""
    local = f"checkpoints/{url.rsplit('/', 1)[-1]}"
    node.ledger.note(f"{where} = {url!r}: download it to {local} (det-sdk reads local checkpoints only)")
    return local


def map_neck(neck: Node) -> dict[str, Any]:
    """FPN: out_channels, num_outs, start_level, extra levels and norm."""
    name = type_of(neck)
    if name != "FPN":
        raise unsupported(neck.at("type"), "neck", name, "FPN")
    out: dict[str, Any] = {"type": "fpn", "out_channels": neck.get("out_channels", 256),
                           "num_outs": neck.get("num_outs", 5), "start_level": neck.get("start_level", 0)}
    neck.ignore("in_channels")
    neck.expect("end_level", -1, "det-sdk's fpn uses the inputs up to the last")
    extra = neck.get("add_extra_convs", False)
    if extra not in FPN_EXTRAS:
        neck.ledger.skip(neck.at("add_extra_convs"), f"{extra!r}: det-sdk's fpn makes extra levels from the input "
                         "('on_input') or the output ('on_output')")
        extra = False
    out["extra"] = FPN_EXTRAS[extra]
    if out["extra"] == "p6p7" and neck.peek("relu_before_extra_convs") is not True:
        neck.ledger.note(f"{neck.path}: det-sdk's fpn (torchvision's) applies a ReLU before P7; MMDetection's "
                         "relu_before_extra_convs=False does not")
    neck.ignore("relu_before_extra_convs", "upsample_cfg")
    norm = neck.child("norm_cfg")
    if norm is not None:
        norm_type = type_of(norm)
        norm.ignore("num_groups", "requires_grad")
        out["norm"] = {"BN": "bn", "SyncBN": "bn", "GN": "gn"}.get(norm_type, "none")
    elif neck.peek("norm_cfg", "absent") is None:
        neck.ignore("norm_cfg")
    neck.skip("act_cfg", "det-sdk's fpn has no activation on its outputs, as MMDetection's default")
    return out


# -- two-stage heads --------------------------------------------------------------------
def _assigner(cfg: Node | None, out: dict[str, Any]) -> None:
    assigner = _sub(cfg, "assigner")
    if assigner is not None:
        kind = type_of(assigner)
        if kind != "MaxIoUAssigner":
            assigner.ledger.skip(assigner.at("type"), f"'{kind}': det-sdk assigns by IoU (MaxIoUAssigner)")
        out["fg_iou_thresh"] = assigner.get("pos_iou_thr", out.get("fg_iou_thresh"))
        neg = assigner.get("neg_iou_thr", out.get("bg_iou_thresh"))
        if isinstance(neg, (list, tuple)):
            assigner.ledger.skip(assigner.at("neg_iou_thr"), f"{neg!r}: det-sdk takes one negative IoU threshold")
        else:
            out["bg_iou_thresh"] = neg
        assigner.ignore("min_pos_iou", "match_low_quality", "gpu_assign_thr")
        assigner.expect("ignore_iof_thr", -1, "det-sdk ignores anchors by crowd regions (crowd_ioa_thresh), not by "
                        "ignored boxes")
    sampler = _sub(cfg, "sampler")
    if sampler is not None and sampler.peek("type") == "PseudoSampler":  # dense heads: every anchor counts
        sampler.ledger.use(sampler.path)
    elif sampler is not None:
        kind = type_of(sampler)
        if kind != "RandomSampler":
            sampler.ledger.skip(sampler.at("type"), f"'{kind}': det-sdk samples at random (RandomSampler)")
        out["batch_size_per_image"] = sampler.get("num", out.get("batch_size_per_image"))
        out["positive_fraction"] = sampler.get("pos_fraction", out.get("positive_fraction"))
        sampler.ignore("neg_pos_ub", "add_gt_as_proposals")
    if cfg is not None:
        cfg.ignore("pos_weight", "debug", "allowed_border")


def _nms(cfg: Node | None, out: dict[str, Any], key: str = "nms_thresh") -> None:
    nms = _sub(cfg, "nms")
    if nms is None:
        return
    kind = type_of(nms)
    if kind not in ("nms", "nms_rotated"):
        nms.ledger.skip(nms.at("type"), f"'{kind}': det-sdk runs plain NMS")
    out[key] = nms.get("iou_threshold", out.get(key))
    nms.ignore("class_agnostic")


def map_rpn(head: Node | None, train: Node | None, proposal: Node | None, test: Node | None, where: str) -> dict:
    """RPNHead with its anchors and the RPN train/test settings."""
    if head is None:
        raise UnsupportedConfigError(f"{where}: no rpn_head")
    kind = type_of(head)
    if kind != "RPNHead":
        raise unsupported(head.at("type"), "RPN head", kind, "RPNHead")
    out: dict[str, Any] = {"type": "rpn_head"}
    head.ignore("in_channels", "feat_channels")
    if "num_convs" in head:
        out["num_convs"] = head.get("num_convs")
    anchors = head.child("anchor_generator")
    if anchors is not None:
        kind = type_of(anchors)
        if kind != "AnchorGenerator":
            raise unsupported(anchors.at("type"), "anchor generator", kind, "AnchorGenerator")
        scales, strides = anchors.get("scales", [8]), anchors.get("strides", [4, 8, 16, 32, 64])
        out["anchor_sizes"] = [[int(stride * scale) for scale in scales] for stride in strides]
        out["aspect_ratios"] = [float(r) for r in anchors.get("ratios", [0.5, 1.0, 2.0])]
    _coder(head, [1.0, 1.0, 1.0, 1.0], None)
    loss_cls = head.child("loss_cls")
    if loss_cls is not None:
        loss_cls.ignore("type", "use_sigmoid", "loss_weight")
    loss_bbox = head.child("loss_bbox")
    if loss_bbox is not None:
        head.ledger.skip(loss_bbox.path, f"{type_of(loss_bbox)}: det-sdk's RPN box loss is torchvision's "
                         "(smooth L1, beta 1/9)")
    _assigner(train, out)
    for cfg, suffix in ((proposal, "train"), (test, "test")):
        if cfg is None:
            continue
        out[f"pre_nms_top_n_{suffix}"] = cfg.get("nms_pre", cfg.get("nms_pre_per_img"))
        out[f"post_nms_top_n_{suffix}"] = cfg.get("max_per_img", cfg.get("max_num"))
        _nms(cfg, out)
        if "nms_thr" in cfg:
            out["nms_thresh"] = cfg.get("nms_thr")
        cfg.expect("min_bbox_size", 0, "det-sdk's RPN keeps proposals of any size")
        cfg.ignore("nms_across_levels")
    return {k: v for k, v in out.items() if v is not None}


def _coder(head: Node, default_stds: list[float], out: dict[str, Any] | None) -> None:
    coder = head.child("bbox_coder")
    if coder is None:
        if out is not None:
            out["bbox_reg_weights"] = [1.0 / s for s in default_stds]
        return
    kind = type_of(coder)
    if kind != "DeltaXYWHBBoxCoder":
        coder.ledger.skip(coder.at("type"), f"'{kind}': det-sdk encodes boxes as (dx, dy, dw, dh) deltas")
    coder.expect("target_means", [0.0, 0.0, 0.0, 0.0], "det-sdk's box coder has zero means")
    stds = coder.peek("target_stds", default_stds)
    if out is None:
        coder.expect("target_stds", default_stds, "det-sdk's RPN decodes with unit weights")
    else:
        coder.get("target_stds")
        out["bbox_reg_weights"] = [round(1.0 / s, 6) for s in stds]
    coder.ignore("clip_border", "add_ctr_clamp", "ctr_clamp")


def _loss_bbox(loss: Node | None, out: dict[str, Any]) -> None:
    if loss is None:
        return
    kind = type_of(loss)
    if kind == "L1Loss":
        out["loss_bbox"] = "l1"
    elif kind == "SmoothL1Loss":
        out["loss_bbox"] = "smooth_l1"
        if loss.peek("beta", 1.0) != 1.0 / 9:
            loss.ledger.note(f"{loss.path}: SmoothL1Loss beta={loss.peek('beta', 1.0)}; det-sdk's smooth_l1 uses "
                             "torchvision's beta 1/9")
        loss.ignore("beta")
    elif kind == "GIoULoss":
        out["loss_bbox"] = "giou"
    else:
        loss.ledger.skip(loss.at("type"), f"'{kind}': det-sdk's box losses are L1, smooth L1 and GIoU")
    if loss.peek("loss_weight", 1.0) != 1.0:
        out["loss_bbox_weight"] = loss.peek("loss_weight")
    loss.ignore("loss_weight", "reduction")


def map_box_head(roi: Node, train: Node | None, test: Node | None) -> dict[str, Any]:
    """The RoI box head, its RoIAlign and the R-CNN train/test settings."""
    head = roi.child("bbox_head")
    if head is None:
        raise UnsupportedConfigError(f"{roi.path}: no bbox_head")
    if isinstance(roi.peek("bbox_head"), list):
        raise unsupported(roi.at("bbox_head"), "RoI head", "a list of box heads (cascade)", "one box head")
    kind = type_of(head)
    out: dict[str, Any] = {}
    if kind == "Shared2FCBBoxHead":
        out["type"] = "shared2fc_box_head"
        out["fc_channels"] = head.get("fc_out_channels", 1024)
    elif kind in ("ConvFCBBoxHead", "Shared4Conv1FCBBoxHead"):
        out["type"] = "convfc_box_head"
        out["num_convs"] = head.get("num_shared_convs", 4 if kind == "Shared4Conv1FCBBoxHead" else 0)
        out["num_fcs"] = head.get("num_shared_fcs", 1 if kind == "Shared4Conv1FCBBoxHead" else 0)
        out["conv_channels"] = head.get("conv_out_channels", 256)
        out["fc_channels"] = head.get("fc_out_channels", 1024)
        norm = head.child("norm_cfg")
        out["norm"] = {"BN": "bn", "SyncBN": "bn", "GN": "gn"}.get(type_of(norm), "none")
        if norm is not None:
            norm.ignore("requires_grad", "num_groups")
        for key in ("num_cls_convs", "num_cls_fcs", "num_reg_convs", "num_reg_fcs"):
            head.expect(key, 0, "det-sdk's box head has shared layers only")
    else:
        raise unsupported(head.at("type"), "box head", kind, "Shared2FCBBoxHead, Shared4Conv1FCBBoxHead")
    _extractor(roi.child("bbox_roi_extractor"), out)
    head.ignore("in_channels", "roi_feat_size", "with_avg_pool")
    _num_classes(head)
    _coder(head, [0.1, 0.1, 0.2, 0.2], out)
    head.expect("reg_class_agnostic", False, "det-sdk's box head regresses per class")
    loss_cls = head.child("loss_cls")
    if loss_cls is not None:
        kind = type_of(loss_cls)
        if kind != "CrossEntropyLoss" or loss_cls.peek("use_sigmoid"):
            loss_cls.ledger.skip(loss_cls.path, f"{kind}: det-sdk's box head classifies with softmax cross-entropy")
        else:
            out["loss_cls"] = "cross_entropy"
        loss_cls.ignore("use_sigmoid", "loss_weight")
    _loss_bbox(head.child("loss_bbox"), out)
    out.update({k: v for k, v in _roi_train_test(train, test).items()})
    return out


def _extractor(extractor: Node | None, out: dict[str, Any]) -> None:
    if extractor is None:
        return
    kind = type_of(extractor)
    if kind != "SingleRoIExtractor":
        raise unsupported(extractor.at("type"), "RoI extractor", kind, "SingleRoIExtractor")
    layer = extractor.child("roi_layer")
    if layer is not None:
        layer_type = type_of(layer)
        if layer_type != "RoIAlign":
            layer.ledger.skip(layer.at("type"), f"'{layer_type}': det-sdk pools with RoIAlign")
        out["roi_size"] = layer.get("output_size", 7)
        out["sampling_ratio"] = layer.get("sampling_ratio", 0)
        if layer.peek("aligned", True):
            layer.ledger.note(f"{layer.path}: MMDetection's RoIAlign is pixel-aligned (aligned=True); det-sdk's "
                              "(torchvision's MultiScaleRoIAlign) is not")
        layer.ignore("aligned", "pool_mode", "use_torchvision")
    out["num_levels"] = len(extractor.get("featmap_strides", [4, 8, 16, 32]))
    extractor.ignore("out_channels", "finest_scale")


def _roi_train_test(train: Node | None, test: Node | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _assigner(train, out)
    if test is not None:
        out["score_thresh"] = test.get("score_thr", 0.05)
        _nms(test, out)
        out["detections_per_img"] = test.get("max_per_img", 100)
    return {k: v for k, v in out.items() if v is not None}


def map_mask_head(roi: Node, train: Node | None, test: Node | None) -> dict[str, Any]:
    """FCNMaskHead with its RoIAlign."""
    head = roi.child("mask_head")
    kind = type_of(head)
    if kind != "FCNMaskHead":
        raise unsupported(head.at("type") if head else roi.at("mask_head"), "mask head", kind, "FCNMaskHead")
    out: dict[str, Any] = {"type": "fcn_mask_head"}
    extractor = roi.child("mask_roi_extractor")
    box_like: dict[str, Any] = {}
    _extractor(extractor, box_like)
    out.update({k: box_like[k] for k in ("roi_size", "sampling_ratio", "num_levels") if k in box_like})
    out["num_convs"] = head.get("num_convs", 4)
    out["conv_channels"] = head.get("conv_out_channels", 256)
    head.ignore("in_channels", "roi_feat_size", "upsample_cfg")
    _num_classes(head)
    loss = head.child("loss_mask")
    if loss is not None:
        out["loss_mask_weight"] = loss.get("loss_weight", 1.0)
        loss.ignore("type", "use_mask")
    if train is not None and "mask_size" in train:
        size = train.get("mask_size")
        if size != 2 * out.get("roi_size", 14):
            train.ledger.skip(train.at("mask_size"), f"{size}: det-sdk's mask targets are twice the RoI size")
    if test is not None:
        test.ignore("mask_thr_binary")
    return out


# -- one-stage heads --------------------------------------------------------------------
def _focal(head: Node, out: dict[str, Any]) -> None:
    loss = head.child("loss_cls")
    if loss is None:
        return
    kind = type_of(loss)
    if kind != "FocalLoss":
        loss.ledger.skip(loss.at("type"), f"'{kind}': det-sdk's dense heads classify with focal loss")
    out["loss_cls"] = "focal"
    out["focal_alpha"] = loss.get("alpha", 0.25)
    out["focal_gamma"] = loss.get("gamma", 2.0)
    loss.ignore("use_sigmoid", "loss_weight")


def _dense_test(test: Node | None, out: dict[str, Any]) -> None:
    if test is None:
        return
    out["topk_candidates"] = test.get("nms_pre", 1000)
    out["score_thresh"] = test.get("score_thr", 0.05)
    _nms(test, out)
    out["detections_per_img"] = test.get("max_per_img", 100)
    test.ignore("min_bbox_size")


def _head_norm(head: Node, default: str) -> str:
    """The towers' norm; absent means the head's default (FCOSHead: GroupNorm, RetinaHead: none)."""
    norm = head.child("norm_cfg")
    if norm is None:
        absent = "norm_cfg" not in head
        head.ignore("norm_cfg")
        return default if absent else "none"
    norm.ignore("num_groups", "requires_grad")
    kind = type_of(norm)
    if kind != "GN":
        norm.ledger.skip(norm.at("type"), f"'{kind}': det-sdk's dense heads take GroupNorm or no norm")
        return "none"
    return "gn"


def map_retina_head(head: Node, train: Node | None, test: Node | None) -> dict[str, Any]:
    """RetinaHead: towers, anchors (octave scales), focal loss and its train/test settings."""
    kind = type_of(head)
    if kind != "RetinaHead":
        raise unsupported(head.at("type"), "RetinaNet head", kind, "RetinaHead")
    out: dict[str, Any] = {"type": "retina_head", "num_convs": head.get("stacked_convs", 4), "norm": _head_norm(head, "none")}
    head.ignore("in_channels", "feat_channels")
    _num_classes(head)
    anchors = head.child("anchor_generator")
    if anchors is not None:
        base, per_octave = anchors.get("octave_base_scale", 4), anchors.get("scales_per_octave", 3)
        strides = anchors.get("strides", [8, 16, 32, 64, 128])
        out["anchor_sizes"] = [[int(s * base * 2 ** (i / per_octave)) for i in range(per_octave)] for s in strides]
        out["aspect_ratios"] = [float(r) for r in anchors.get("ratios", [0.5, 1.0, 2.0])]
        anchors.ignore("type")
    _coder(head, [1.0, 1.0, 1.0, 1.0], None)
    _focal(head, out)
    _loss_bbox(head.child("loss_bbox"), out)
    _assigner(train, out)
    _dense_test(test, out)
    return {k: v for k, v in out.items() if v is not None}


def map_fcos_head(head: Node, train: Node | None, test: Node | None) -> dict[str, Any]:
    """FCOSHead: towers, norm, strides, center sampling, losses and test settings."""
    kind = type_of(head)
    if kind != "FCOSHead":
        raise unsupported(head.at("type"), "FCOS head", kind, "FCOSHead")
    out: dict[str, Any] = {"type": "fcos_head", "num_convs": head.get("stacked_convs", 4), "norm": _head_norm(head, "gn"),
                           "strides": list(head.get("strides", [4, 8, 16, 32, 64]))}
    head.ignore("in_channels", "feat_channels", "regress_ranges", "conv_bias")
    _num_classes(head)
    if head.get("center_sampling", False):
        out["center_sampling_radius"] = head.get("center_sample_radius", 1.5)
    else:
        head.ledger.note(f"{head.path}: MMDetection samples no centre region here (center_sampling=False); "
                         "det-sdk's fcos_head always does (center_sampling_radius 1.5)")
    for key, reason in (("norm_on_bbox", "det-sdk's fcos_head (torchvision's) always predicts distances in strides"),
                        ("centerness_on_reg", "det-sdk's fcos_head (torchvision's) always puts centerness on the "
                         "box branch")):
        if not head.get(key, False):
            head.ledger.note(f"{head.at(key)} = False: {reason}")
    head.expect("dcn_on_last_conv", False, "det-sdk's fcos_head has no deformable convolutions")
    _focal(head, out)
    loss = head.child("loss_bbox")
    if loss is not None:
        box = type_of(loss)
        out["loss_bbox"] = {"IoULoss": "iou", "GIoULoss": "giou"}.get(box, "giou")
        if box not in ("IoULoss", "GIoULoss"):
            loss.ledger.skip(loss.at("type"), f"'{box}': det-sdk's fcos_head takes IoU or GIoU box losses")
        if loss.peek("loss_weight", 1.0) != 1.0:
            out["loss_bbox_weight"] = loss.peek("loss_weight")
        loss.ignore("loss_weight", "mode", "eps")
    centerness = head.child("loss_centerness")
    if centerness is not None:
        centerness.ignore("type", "use_sigmoid", "loss_weight")
    if train is not None:
        train.ignore("assigner", "allowed_border", "pos_weight", "debug")
    _dense_test(test, out)
    return {k: v for k, v in out.items() if v is not None}
