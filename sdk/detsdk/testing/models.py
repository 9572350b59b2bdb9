"""Checks of the model kinds: backbone, neck and detector (heads are checked inside detectors).

Each function takes the built component and returns one ``CheckResult`` per
check; nothing here raises for a broken component.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from detsdk.testing.results import CheckResult, error_text, failed, verdict

NECK_INPUT_CHANNELS = [16, 32, 64, 128]
NECK_INPUT_STRIDES = [4, 8, 16, 32]
NECK_OUT_CHANNELS = 24  # asked of a neck whose factory takes ``out_channels``, to see it honoured


def check_backbone(component: str, backbone: nn.Module) -> list[CheckResult]:
    """Output dict fine to coarse; ``out_channels`` and ``strides`` match the tensors at two sizes; gradients flow."""
    out_channels = list(getattr(backbone, "out_channels", None) or [])
    strides = list(getattr(backbone, "strides", None) or [])
    results = [verdict(component, "attributes", _attribute_problems(out_channels, strides),
                       f"out_channels {out_channels}, strides {strides}")]
    if results[0].failed:
        return results
    unit = max(max(strides), 16)
    sizes = [(2 * unit, 2 * unit), (2 * unit, 3 * unit)]
    backbone.train()
    outputs = []
    for height, width in sizes:
        try:
            outputs.append(backbone(torch.rand(2, 3, height, width)))
        except Exception as exc:  # a broken component is a finding, not a crash of the kit
            return [*results, failed(component, "forward", f"{height}x{width} input raised {error_text(exc)}")]
    for (height, width), features in zip(sizes, outputs):
        problems = _feature_problems(features, out_channels, strides, height, width)
        results.append(verdict(component, f"outputs at {height}x{width}", problems,
                               f"{len(features)} maps {_sizes(features)} fine to coarse, channels and strides match"))
    results.append(gradient_check(component, backbone, outputs[-1]))
    return results


def check_neck(component: str, build) -> list[CheckResult]:
    """``build(in_channels, out_channels or None)`` gives the neck: dict in, dict out, ``out_channels`` honoured.

    ``build`` is called with ``out_channels`` when the factory takes it (to
    see a value other than its default honoured), else with ``None``.
    """
    try:
        neck, asked = build(list(NECK_INPUT_CHANNELS), NECK_OUT_CHANNELS)
    except Exception as exc:
        return [failed(component, "build", f"factory(in_channels={NECK_INPUT_CHANNELS}) raised {error_text(exc)}")]
    out_channels = getattr(neck, "out_channels", None)
    problems = []
    if isinstance(out_channels, bool) or not isinstance(out_channels, int):
        problems.append(f"out_channels is {out_channels!r}, expected an int")
    elif asked is not None and out_channels != asked:
        problems.append(f"built with out_channels={asked} but reports out_channels={out_channels}")
    results = [verdict(component, "out_channels", problems, f"{out_channels} (built with in_channels={NECK_INPUT_CHANNELS})")]
    if results[0].failed:
        return results
    size = 64
    inputs = {f"c{i + 2}": torch.rand(2, c, size // s, size // s, requires_grad=True)
              for i, (c, s) in enumerate(zip(NECK_INPUT_CHANNELS, NECK_INPUT_STRIDES))}
    neck.train()
    try:
        features = neck(inputs)
    except Exception as exc:
        return [*results, failed(component, "forward", f"a dict of {len(inputs)} maps raised {error_text(exc)}")]
    problems = []
    if not isinstance(features, Mapping) or not features:
        problems.append(f"returned {type(features).__name__}, expected a non-empty dict of feature maps")
    else:
        for key, value in features.items():
            if not isinstance(value, torch.Tensor) or value.dim() != 4:
                problems.append(f"output '{key}' is not a B x C x H x W tensor")
            elif value.shape[1] != out_channels:
                problems.append(f"output '{key}' has {value.shape[1]} channels, out_channels says {out_channels}")
        if not problems:
            problems += _order_problems(features)
        strides = getattr(neck, "strides", None)
        if not problems and strides is not None:
            problems += _stride_problems(features, list(strides), size, size)
    results.append(verdict(component, "outputs", problems,
                           f"dict of {len(features) if isinstance(features, Mapping) else 0} maps "
                           f"{_sizes(features) if isinstance(features, Mapping) else ''} with {out_channels} channels"))
    if not results[-1].failed:
        results.append(gradient_check(component, neck, features))
    return results


def check_detector(component: str, model: nn.Module, num_classes: int, image_size: tuple[int, int] = (96, 128)) -> list[CheckResult]:
    """Training gives finite scalar losses with gradients; eval gives one detection set per image, in range.

    ``model`` is built for ``num_classes`` classes; two images of ``image_size``
    with two objects each are used (already normalised, as the pipeline makes them).
    """
    height, width = image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, height, width, generator=generator)
    targets = []
    for i in range(2):
        boxes = torch.tensor([[8.0, 10.0, 48.0, 60.0], [60.0, 30.0, 120.0, 90.0]]) + 2 * i
        targets.append({"boxes": boxes, "labels": torch.tensor([0, (i + 1) % num_classes]),
                        "iscrowd": torch.zeros(2, dtype=torch.bool), "image_size": (height, width),
                        "masks": _box_masks(boxes, height, width)})
    results = []
    model.train()
    try:
        losses = model(images, targets)
    except Exception as exc:
        return [failed(component, "training forward", f"raised {error_text(exc)}")]
    results.append(_loss_check(component, losses))
    if results[-1].failed:
        return results
    total = sum(losses.values())
    results.append(gradient_check(component, model, total, already_scalar=True))
    model.eval()
    try:
        with torch.no_grad():
            detections = model(images, image_sizes=[(height, width)] * 2)
    except Exception as exc:
        return [*results, failed(component, "eval forward", f"raised {error_text(exc)}")]
    results.append(verdict(component, "detections", _detection_problems(detections, 2, num_classes, height, width),
                           _detection_summary(detections)))
    return results


def gradient_check(component: str, module: nn.Module, outputs, already_scalar: bool = False) -> CheckResult:
    """Back-propagate the outputs' mean; every parameter that requires a gradient must get a finite one."""
    module.zero_grad(set_to_none=True)
    try:
        if already_scalar:
            loss = outputs
        else:
            tensors = list(outputs.values()) if isinstance(outputs, Mapping) else [outputs]
            loss = sum(t.float().mean() for t in tensors)
        loss.backward()
    except Exception as exc:
        return failed(component, "gradients", f"backward raised {error_text(exc)}")
    trainable = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    missing = [name for name, p in trainable if p.grad is None]
    broken = [name for name, p in trainable if p.grad is not None and not torch.isfinite(p.grad).all()]
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(trainable)} trainable parameters get no gradient ({', '.join(missing[:3])})")
    if broken:
        problems.append(f"{len(broken)} parameters get non-finite gradients ({', '.join(broken[:3])})")
    return verdict(component, "gradients", problems, f"all {len(trainable)} trainable parameters get a finite gradient")


def _attribute_problems(out_channels: list, strides: list) -> list[str]:
    problems = []
    if not out_channels or not all(isinstance(c, int) and c > 0 for c in out_channels):
        problems.append(f"out_channels is {out_channels!r}, expected a list of positive ints")
    if not strides or not all(isinstance(s, int) and s > 0 for s in strides):
        problems.append(f"strides is {strides!r}, expected a list of positive ints")
    elif any(b <= a for a, b in zip(strides, strides[1:])):
        problems.append(f"strides {strides} are not increasing (fine to coarse)")
    if not problems and len(out_channels) != len(strides):
        problems.append(f"{len(out_channels)} out_channels but {len(strides)} strides")
    return problems


def _feature_problems(features, out_channels: list[int], strides: list[int], height: int, width: int) -> list[str]:
    if not isinstance(features, Mapping):
        return [f"returned {type(features).__name__}, expected a dict of feature maps"]
    if len(features) != len(out_channels):
        return [f"returned {len(features)} maps {list(features)} but out_channels has {len(out_channels)} entries"]
    problems = []
    for (key, value), channels in zip(features.items(), out_channels):
        if not isinstance(value, torch.Tensor) or value.dim() != 4:
            problems.append(f"'{key}' is not a B x C x H x W tensor")
        elif value.shape[1] != channels:
            problems.append(f"'{key}' has {value.shape[1]} channels, out_channels says {channels}")
    return problems or _order_problems(features) or _stride_problems(features, strides, height, width)


def _order_problems(features: Mapping) -> list[str]:
    sizes = [tuple(v.shape[-2:]) for v in features.values()]
    for (key_a, a), (key_b, b) in zip(zip(features, sizes), list(zip(features, sizes))[1:]):
        if b[0] > a[0] or b[1] > a[1]:
            return [f"not ordered fine to coarse: '{key_b}' {b[0]}x{b[1]} follows '{key_a}' {a[0]}x{a[1]}"]
    return []


def _stride_problems(features: Mapping, strides: list[int], height: int, width: int) -> list[str]:
    if len(strides) != len(features):
        return [f"{len(features)} maps but strides has {len(strides)} entries"]
    problems = []
    for (key, value), stride in zip(features.items(), strides):
        h, w = value.shape[-2:]
        if not (math.floor(height / stride) <= h <= math.ceil(height / stride)
                and math.floor(width / stride) <= w <= math.ceil(width / stride)):
            actual = f"{height / h:g}" if h else "?"
            problems.append(f"'{key}' is {h}x{w} for a {height}x{width} input: stride {actual}, strides says {stride}")
    return problems


def _loss_check(component: str, losses) -> CheckResult:
    if not isinstance(losses, Mapping) or not losses:
        return failed(component, "losses", f"training returned {type(losses).__name__}, expected a dict of losses")
    problems = []
    for name, value in losses.items():
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            problems.append(f"'{name}' is not a scalar tensor")
        elif not torch.isfinite(value):
            problems.append(f"'{name}' is {value.item()}")
        elif not value.requires_grad:
            problems.append(f"'{name}' has no gradient (requires_grad is False)")
    shown = ", ".join(f"{k} {float(v.detach()):.3g}" for k, v in losses.items() if isinstance(v, torch.Tensor) and v.dim() == 0)
    return verdict(component, "losses", problems, f"finite scalars with gradients: {shown}")


def _detection_problems(detections, batch: int, num_classes: int, height: int, width: int) -> list[str]:
    if not isinstance(detections, (list, tuple)):
        return [f"eval returned {type(detections).__name__}, expected a list with one detection dict per image"]
    if len(detections) != batch:
        return [f"eval returned {len(detections)} detection sets for {batch} images"]
    problems = []
    for i, detection in enumerate(detections):
        if not isinstance(detection, Mapping) or not {"boxes", "scores", "labels"} <= detection.keys():
            problems.append(f"image {i}: expected a dict with boxes, scores and labels")
            continue
        boxes, scores, labels = (torch.as_tensor(detection[k]).detach().float() for k in ("boxes", "scores", "labels"))
        n = len(scores)
        if boxes.shape != (n, 4) or labels.shape != (n,):
            problems.append(f"image {i}: boxes {tuple(boxes.shape)}, scores {tuple(scores.shape)}, labels "
                            f"{tuple(labels.shape)} do not agree (expected N x 4, N, N)")
            continue
        if n and not torch.isfinite(boxes).all():
            problems.append(f"image {i}: non-finite boxes")
        elif n and ((boxes[:, 0] < -1) | (boxes[:, 1] < -1) | (boxes[:, 2] > width + 1) | (boxes[:, 3] > height + 1)
                    | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
            problems.append(f"image {i}: boxes outside the {width}x{height} image or not x1 y1 x2 y2")
        if n and ((scores < 0) | (scores > 1) | ~torch.isfinite(scores)).any():
            problems.append(f"image {i}: scores outside [0, 1] (min {scores.min().item():.3g}, max {scores.max().item():.3g})")
        if n and ((labels < 0) | (labels >= num_classes) | (labels != labels.round())).any():
            problems.append(f"image {i}: labels outside 0..{num_classes - 1} ({sorted(set(labels.long().tolist()))[:5]})")
    return problems


def _detection_summary(detections) -> str:
    counts = [len(d["scores"]) for d in detections]
    return f"one set per image ({', '.join(map(str, counts))} detections), boxes, scores and labels in range"


def _box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    masks = torch.zeros((len(boxes), height, width), dtype=torch.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.long().tolist()):
        mask[y1:y2, x1:x2] = 1
    return masks


def _sizes(features) -> str:
    return "[" + ", ".join(f"{v.shape[-2]}x{v.shape[-1]}" for v in features.values() if isinstance(v, torch.Tensor)) + "]"
