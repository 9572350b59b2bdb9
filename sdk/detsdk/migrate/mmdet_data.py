"""MMDetection's datasets, pipelines, data preprocessor and evaluator as a recipe's ``[data]`` and ``[eval]``.

3.x (``train_dataloader``, ``data_prefix``, ``metainfo``, ``data_preprocessor``,
``val_evaluator``) and 2.x (``data = dict(train=...)``, ``img_prefix``, ``classes``,
``Normalize``/``Pad`` in the pipeline, ``evaluation``) both map to det-sdk's tables.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from detsdk.migrate.ledger import Node, UnsupportedConfigError, type_of

FORMATTING = {"LoadImageFromFile", "LoadAnnotations", "PackDetInputs", "DefaultFormatBundle", "Collect",
              "ImageToTensor", "ToTensor", "LoadImageFromWebcam", "FilterAnnotations"}
# Transforms #12 adds to det-sdk (RTMDet / YOLOX): recipe names of MMDetection's types.
LATER_TRANSFORMS = {"Mosaic": "mosaic", "CachedMosaic": "mosaic", "MixUp": "mixup", "CachedMixUp": "mixup",
                    "YOLOXHSVRandomAug": "yolox_hsv"}
SPLIT = re.compile(r"(train|val|test|trainval)")


def join(root: str, path: str) -> str:
    """MMDetection's ``data_root + path`` as a recipe path, without the trailing slash."""
    joined = posixpath.join(root, path) if root and not path.startswith("/") else path
    return joined.rstrip("/")


# -- datasets ---------------------------------------------------------------------------
def map_dataset(node: Node, pipeline_out: list[dict[str, Any]], flags: dict[str, Any], train: bool) -> dict:
    """One dataset table (wrappers nested); its pipeline goes to ``pipeline_out``, mask loading to ``flags``."""
    kind = type_of(node)
    if kind == "RepeatDataset":
        inner = node.child("dataset")
        return {"type": "repeat", "times": node.get("times", 1), "dataset": map_dataset(inner, pipeline_out, flags, train)}
    if kind == "ConcatDataset":
        node.ignore("separate_eval", "ignore_keys")
        return {"type": "concat", "datasets": [map_dataset(d, pipeline_out, flags, train) for d in node.items("datasets")]}
    if kind == "ClassBalancedDataset":
        raise UnsupportedConfigError(f"{node.at('type')}: dataset wrapper 'ClassBalancedDataset' is not available "
                                     "in det-sdk (it has RepeatDataset and ConcatDataset)")
    pipeline = node.items("pipeline")
    if pipeline and not pipeline_out:
        pipeline_out.extend(map_pipeline(pipeline, flags))
    elif pipeline and map_pipeline(pipeline, dict(flags)) != pipeline_out:  # a concat's second pipeline
        node.ledger.skip(node.at("pipeline"), "det-sdk has one pipeline per split: the first dataset's is used")
    root = node.get("data_root", "") or ""  # 3.x: ann_file and data_prefix are relative to it
    prefix = node.child("data_prefix")
    images = ""
    if prefix is not None:
        images = prefix.get("img", prefix.get("img_path", "")) or ""
        if prefix.peek("sub_data_root"):  # 3.x VOC: the year's folder; ann_file stays relative to data_root
            images = images or prefix.get("sub_data_root")
        prefix.ignore("seg")
    images = node.get("img_prefix", images) or ""
    ann_file = node.get("ann_file", "")
    if isinstance(ann_file, list) or isinstance(images, list):
        parts = []
        for index, ann in enumerate(ann_file if isinstance(ann_file, list) else [ann_file]):
            image = images[index] if isinstance(images, list) else images
            part = Node(node.ledger, node.path, {**node.value, "ann_file": ann, "img_prefix": image, "pipeline": []})
            parts.append(map_dataset(part, [], flags, train))
        return {"type": "concat", "datasets": parts}
    node.ignore("test_mode", "backend_args", "file_client_args", "lazy_init", "serialize_data", "indices",
                "seg_prefix", "proposal_file_is_none")
    out = _leaf_dataset(node, kind, root, ann_file, images)
    _filters(node, out, train)
    classes = node.get("classes")
    metainfo = node.child("metainfo")
    if metainfo is not None:
        classes = metainfo.get("classes", classes)
        metainfo.ignore("palette")
    if classes:
        out["classes"] = list(classes)
    node.skip("proposal_file", "det-sdk's detectors make their own proposals")
    return out


def _leaf_dataset(node: Node, kind: str, root: str, ann_file: str, images: str) -> dict[str, Any]:
    if kind == "CocoDataset":
        return {"type": "coco", "ann_file": join(root, ann_file), "images": join(root, images)}
    if kind == "CityscapesDataset":
        # det-sdk reads leftImg8bit/ and gtFine/ itself; MMDetection reads its converted COCO JSON.
        folder = join(root, images) or join(root, ann_file)
        split = _split(folder) or _split(ann_file) or "train"
        base = root.rstrip("/") if root else folder.split("/leftImg8bit")[0]
        node.ledger.note(f"{node.path}: CityscapesDataset -> det-sdk's cityscapes, which reads {base}/gtFine "
                         f"itself; MMDetection's converted JSON ({ann_file}) is not needed")
        return {"type": "cityscapes", "root": base, "split": split}
    if kind == "VOCDataset":
        # 2.x: ann_file '<root>/VOC2007/ImageSets/Main/trainval.txt'; 3.x: sub_data_root 'VOC2007/'.
        ann = join(root, ann_file)
        voc_root = ann.split("/ImageSets")[0] if "/ImageSets" in ann else join(root, images)
        split = posixpath.splitext(posixpath.basename(ann_file))[0] or "trainval"
        return {"type": "voc", "root": voc_root, "split": split}
    if kind == "WIDERFaceDataset":
        folder = join(root, images)
        split = "val" if "val" in folder else "train"
        base = folder.split("/WIDER_")[0] if "/WIDER_" in folder else root.rstrip("/")
        node.ledger.skip(node.at("ann_file"), f"{ann_file!r}: MMDetection's WIDERFaceDataset reads VOC-style XML; "
                         f"det-sdk's widerface reads the benchmark's wider_face_{split}_bbx_gt.txt (set here)")
        return {"type": "widerface", "ann_file": f"{base}/wider_face_split/wider_face_{split}_bbx_gt.txt",
                "images": f"{base}/WIDER_{split}/images"}
    raise UnsupportedConfigError(f"{node.at('type')}: dataset '{kind}' is not available in det-sdk (it has "
                                 "CocoDataset, CityscapesDataset, VOCDataset, WIDERFaceDataset)")


def _split(path: str) -> str | None:
    found = SPLIT.findall(posixpath.basename(path.rstrip("/"))) or SPLIT.findall(path)
    return found[-1] if found else None


def _filters(node: Node, out: dict[str, Any], train: bool) -> None:
    filter_cfg = node.child("filter_cfg")
    # MMDetection 2.x filters images without boxes by default when training; 3.x only when told.
    empty = node.get("filter_empty_gt", train and "filter_cfg" not in node and _is_2x(node))
    if filter_cfg is not None:
        empty = filter_cfg.get("filter_empty_gt", False)
        if filter_cfg.peek("min_size"):
            filter_cfg.ledger.skip(filter_cfg.at("min_size"), f"{filter_cfg.peek('min_size')}: MMDetection drops "
                                   "images narrower or lower than this; det-sdk's min_size drops boxes instead")
        filter_cfg.ignore("min_size", "bbox_min_size")
    if empty and out["type"] in ("coco", "cityscapes", "voc", "widerface"):
        out["filter_empty"] = True


def _is_2x(node: Node) -> bool:
    return "img_prefix" in node.value or "data_prefix" not in node.value


# -- pipelines --------------------------------------------------------------------------
def map_pipeline(items: list[Node], flags: dict[str, Any]) -> list[dict[str, Any]]:
    """det-sdk transforms for an MMDetection pipeline; loading and formatting steps need none."""
    out: list[dict[str, Any]] = []
    for item in items:
        out.extend(map_transform(item, flags))
    return out


def map_transform(item: Node, flags: dict[str, Any], scale: Any = None) -> list[dict[str, Any]]:
    """One MMDetection transform as zero or more det-sdk transforms."""
    kind = type_of(item)
    if kind == "LoadAnnotations":
        if item.get("with_mask", False):
            flags["with_masks"] = True
        item.ignore("with_bbox", "poly2mask", "with_label", "box_type", "with_seg", "backend_args")
        return []
    if kind in FORMATTING:
        item.ledger.use(item.path)
        return []
    if kind == "MultiScaleFlipAug":
        if item.get("flip", False):
            item.ledger.skip(item.at("flip"), "test-time flip: set eval.tta in the recipe (docs/tta.md)")
        scale = item.get("img_scale", item.get("scale"))
        item.ignore("flip_direction", "scale_factor")
        return [t for inner in item.items("transforms") for t in map_transform(inner, flags, scale)]
    if kind in ("Resize", "RandomResize", "RandomChoiceResize"):
        return [_resize(item, kind, scale)]
    if kind == "RandomFlip":
        if scale is not None:  # inside MultiScaleFlipAug without flip: does nothing
            item.ledger.use(item.path)
            return []
        p = item.get("prob", item.get("flip_ratio", 0.5))
        direction = item.get("direction", "horizontal")
        return [{"type": "random_flip", "p": p if p is not None else 0.5, "direction": direction}]
    if kind == "PhotoMetricDistortion":
        out = {"type": "photometric_distortion"}
        for key in ("brightness_delta", "contrast_range", "saturation_range", "hue_delta"):
            if key in item:
                out[key] = item.get(key)
        return [out]
    if kind == "Normalize":
        return [_normalize(item, item.get("mean"), item.get("std"), item.get("to_rgb", True), "to_rgb")]
    if kind == "Pad":
        size = item.get("size")
        if size and flags.get("v3"):  # 3.x: (width, height); 2.x and det-sdk: (height, width)
            size = list(size)[::-1]
        item.skip("pad_to_square", "det-sdk pads to a size or a divisor")
        return [_pad(item, item.get("size_divisor"), size, item.get("pad_val", 0))]
    if kind == "RandomCrop":
        crop_type, crop_size = item.get("crop_type", "absolute"), list(item.get("crop_size"))
        if flags.get("v3") and crop_type in ("absolute", "relative"):  # 3.x: (width, height)
            crop_size = crop_size[::-1]
        out = {"type": "random_crop", "crop_size": crop_size, "crop_type": crop_type,
               "allow_negative_crop": item.get("allow_negative_crop", False)}
        item.ignore("recompute_bbox", "bbox_clip_border")
        return [out]
    if kind == "MinIoURandomCrop":
        item.ignore("bbox_clip_border")
        return [{"type": "min_iou_random_crop", "min_ious": list(item.get("min_ious", [0.1, 0.3, 0.5, 0.7, 0.9])),
                 "min_crop_size": item.get("min_crop_size", 0.3)}]
    if kind == "Expand":
        mean, to_rgb = item.get("mean", [0, 0, 0]), item.get("to_rgb", True)
        out = {"type": "expand", "mean": list(mean) if to_rgb else list(mean)[::-1],
               "ratio_range": list(item.get("ratio_range", [1, 4])), "prob": item.get("prob", 0.5)}
        return [out]
    if kind in LATER_TRANSFORMS:
        return [_later_transform(item, kind)]
    item.ledger.skip(item.path, f"transform '{kind}' has no det-sdk counterpart: left out of the pipeline")
    return []


def _resize(item: Node, kind: str, scale: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "resize", "keep_ratio": item.get("keep_ratio", True)}
    if kind == "RandomChoiceResize":
        scales, mode = item.get("scales"), "value"
    elif kind == "RandomResize" and item.peek("ratio_range") is not None:  # #12's random_resize
        item.ignore("resize_type")
        return {"type": "random_resize", "scale": item.get("scale"), "ratio_range": item.get("ratio_range"),
                "keep_ratio": item.get("keep_ratio", True)}
    elif kind == "RandomResize":
        scales, mode = item.get("scale"), "range"
    else:
        scales = item.get("scale", item.get("img_scale", scale))
        mode = item.get("multiscale_mode", "range")
        if item.peek("ratio_range") is not None:
            item.ledger.skip(item.at("ratio_range"), "det-sdk's resize has no ratio_range")
    item.ignore("backend", "interpolation", "bbox_clip_border", "clip_object_border", "override", "resize_type")
    if scales is None:
        scales = [1333, 800]
    if isinstance(scales, list) and scales and isinstance(scales[0], list):
        out["scale"] = [list(s) for s in scales] if len(scales) > 1 else list(scales[0])
        if len(scales) > 1:
            out["multiscale_mode"] = mode
    else:
        out["scale"] = list(scales) if isinstance(scales, list) else [scales, scales]
    return out


def _normalize(node: Node, mean: Any, std: Any, rgb: bool, key: str) -> dict[str, Any]:
    mean, std = list(mean or [123.675, 116.28, 103.53]), list(std or [58.395, 57.12, 57.375])
    if not rgb:
        node.ledger.note(f"{node.at(key)} = False: the network saw BGR images; det-sdk's are RGB, so mean and std "
                         "are reversed here, and a caffe-pretrained backbone's first conv expects BGR")
        mean, std = mean[::-1], std[::-1]
    return {"type": "normalize", "mean": mean, "std": std}


def _pad(node: Node, divisor: Any, size: Any, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "pad"}
    if size:
        out["size"] = list(size)  # det-sdk: size wins over size_divisor
    else:
        out["size_divisor"] = divisor or 0
    value = _scalar(value.get("img", 0) if isinstance(value, dict) else value)
    if value:
        out["pad_value"] = float(value)
    return out


def _scalar(value: Any) -> Any:
    """``(114, 114, 114)`` -> ``114``: det-sdk pads with one value for every channel."""
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        return value[0]
    return value


# Parameters of #12's mosaic, mixup and yolox_hsv, named as MMDetection's.
LATER_PARAMETERS = {
    "mosaic": ("img_scale", "center_ratio_range", "pad_val", "prob", "max_cached_images", "random_pop"),
    "mixup": ("img_scale", "ratio_range", "flip_ratio", "pad_val", "prob", "max_cached_images", "random_pop",
              "max_iters"),
    "yolox_hsv": ("hue_delta", "saturation_delta", "value_delta"),
}
# MMDetection's cached variants' cache sizes (det-sdk's default, 0, is the uncached transform).
CACHED = {"CachedMosaic": {"max_cached_images": 40, "random_pop": True},
          "CachedMixUp": {"max_cached_images": 20, "random_pop": True}}


def _later_transform(item: Node, kind: str) -> dict[str, Any]:
    """Mosaic, MixUp, YOLOX-HSV (and their cached variants) as #12's mosaic, mixup, yolox_hsv."""
    name = LATER_TRANSFORMS[kind]
    out: dict[str, Any] = {"type": name}
    for key in LATER_PARAMETERS[name]:
        if key in item:
            value = item.get(key)
            out[key] = float(_scalar(value)) if key == "pad_val" else value
        elif key in CACHED.get(kind, {}):
            out[key] = CACHED[kind][key]
    item.ignore("bbox_clip_border", "skip_filter")
    return out


def preprocessor_steps(model: Node | None) -> list[dict[str, Any]] | None:
    """MMDetection 3.x's ``data_preprocessor`` (normalise and pad on the device) as pipeline steps."""
    node = model.child("data_preprocessor") if model is not None else None
    if node is None:
        return None
    node.ledger.use(node.at("type"))
    steps = [_normalize(node, node.get("mean"), node.get("std"), node.get("bgr_to_rgb", False), "bgr_to_rgb")]
    divisor = node.get("pad_size_divisor", 1)
    if divisor > 1:
        steps.append(_pad(node, divisor, None, node.get("pad_value", 0)))
    node.ignore("pad_value")
    node.ignore("rgb_to_bgr", "boxtype2tensor", "pad_mask", "mask_pad_value", "pad_seg", "seg_pad_value")
    if node.peek("batch_augments"):
        node.skip("batch_augments", "det-sdk applies augmentations per sample, not per batch")
    node.ignore("batch_augments")
    return steps


# -- evaluator --------------------------------------------------------------------------
def map_evaluators(nodes: list[Node]) -> dict[str, Any] | None:
    """3.x ``val_evaluator`` (one or a list): CocoMetric + CityScapesMetric is det-sdk's cityscapes metric."""
    cityscapes = [n for n in nodes if n.peek("type") == "CityScapesMetric"]
    others = [map_evaluator(n) for n in nodes if n not in cityscapes]
    if not cityscapes:
        return others[0] if others else None
    for node in cityscapes:
        node.ignore("type", "backend_args", "format_only", "keep_results")
        node.skip("seg_prefix", "det-sdk's cityscapes metric reads the gtFine/ of the dataset's root")
        node.skip("outfile_prefix", "det-sdk writes its results under the run's work dir")
    iou_types = next((o["iou_types"] for o in others if o and o.get("type") == "coco"), ["bbox", "segm"])
    return {"type": "cityscapes", "iou_types": iou_types}


def map_evaluator(node: Node | None, metrics: Any = None) -> dict[str, Any] | None:
    """CocoMetric / VOCMetric (3.x) or ``evaluation.metric`` (2.x) as ``eval.metric``."""
    if node is not None:
        kind = type_of(node)
        metrics = node.get("metric", "bbox")
        node.ignore("ann_file", "backend_args", "format_only", "outfile_prefix", "proposal_nums", "iou_thrs")
        if node.peek("format_only"):
            node.ledger.skip(node.at("format_only"), "det-sdk always scores; use `sdk predict` to write results")
        if kind == "VOCMetric":
            mode = node.get("eval_mode", "area")
            return {"type": "voc", "iou_thrs": [0.5], "mode": "11points" if mode == "11points" else "area"}
        if kind not in ("CocoMetric", ""):
            node.ledger.skip(node.at("type"), f"'{kind}': det-sdk's metrics are COCO and VOC here")
            return None
        out = {"type": "coco", "iou_types": _iou_types(metrics)}
        if node.get("classwise", False):
            out["classwise"] = True
        return out
    if metrics is None:
        return None
    if metrics == "mAP" or metrics == ["mAP"]:
        return {"type": "voc", "iou_thrs": [0.5], "mode": "area"}
    return {"type": "coco", "iou_types": _iou_types(metrics)}


def _iou_types(metrics: Any) -> list[str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    return [m for m in names if m in ("bbox", "segm")] or ["bbox"]
