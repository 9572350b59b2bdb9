"""Checks of the data kinds: dataset (samples as DESIGN.md defines them) and transform (painted samples)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from detsdk.data.mixing import extra_samples, with_mix_samples
from detsdk.data.check import CheckReport, check_objects
from detsdk.data.seeding import sample_seeded
from detsdk.testing.painted import alignment_problems, default_painted_sample
from detsdk.testing.results import CheckResult, error_text, failed, verdict

SAMPLES_CHECKED = 4  # first, last and evenly spaced ones between
TRANSFORM_TRIALS = 8  # seeds per transform: random ones (p = 0.5) take both branches
META_KEYS = ("image_id", "file")


def check_dataset(component: str, dataset: Any) -> list[CheckResult]:
    """``len``, ``classes``, and per checked sample: dtypes and shapes, x1 y1 x2 y2 boxes inside, labels, masks, meta."""
    try:
        length = len(dataset)
    except Exception as exc:
        return [failed(component, "len", f"len() raised {error_text(exc)}")]
    classes = getattr(dataset, "classes", None)
    problems = []
    if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) for c in classes):
        problems.append(f"classes is {classes!r:.80}, expected a non-empty list of names")
    if length < 1:
        problems.append("len() is 0: no samples to check")
    results = [verdict(component, "len and classes", problems, f"{length} samples, {len(classes or [])} classes")]
    if results[0].failed:
        return results
    indices = sorted({int(round(i)) for i in np.linspace(0, length - 1, min(SAMPLES_CHECKED, length))})
    for index in indices:
        try:
            sample = dataset[index]
        except Exception as exc:
            results.append(failed(component, f"sample {index}", f"dataset[{index}] raised {error_text(exc)}"))
            continue
        problems = sample_problems(sample, list(classes))
        results.append(verdict(component, f"sample {index}", problems, _sample_summary(sample)))
    return results


def sample_problems(sample: Any, classes: list[str]) -> list[str]:
    """What breaks DESIGN.md's sample contract in ``sample`` (dtypes, shapes, boxes, labels, masks, meta)."""
    if not isinstance(sample, Mapping):
        return [f"is a {type(sample).__name__}, expected a dict"]
    missing = [k for k in ("image", "boxes", "labels", "meta") if k not in sample]
    if missing:
        return [f"has no {', '.join(missing)}"]
    image, boxes, labels = sample["image"], sample["boxes"], sample["labels"]
    problems = []
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        problems.append(f"image is {_described(image)}, expected an H x W x 3 uint8 array")
        return problems
    if not isinstance(boxes, np.ndarray) or boxes.dtype != np.float32 or boxes.ndim != 2 or boxes.shape[1:] != (4,):
        problems.append(f"boxes are {_described(boxes)}, expected float32 N x 4")
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 1:
        problems.append(f"labels are {_described(labels)}, expected int64 N")
    if problems:
        return problems
    if len(labels) != len(boxes):
        problems.append(f"{len(boxes)} boxes but {len(labels)} labels")
    if "iscrowd" in sample:
        crowd = np.asarray(sample["iscrowd"])
        if crowd.dtype != bool or crowd.shape != (len(boxes),):
            problems.append(f"iscrowd is {_described(crowd)}, expected bool {len(boxes)}")
    if "masks" in sample:
        masks = sample["masks"]
        expected = (len(boxes), *image.shape[:2])
        if not isinstance(masks, np.ndarray) or masks.dtype != np.uint8 or masks.shape != expected:
            problems.append(f"masks are {_described(masks)}, expected uint8 {' x '.join(map(str, expected))} (the image's size)")
    meta = sample["meta"]
    if not isinstance(meta, Mapping) or any(k not in meta for k in META_KEYS):
        problems.append(f"meta {sorted(meta) if isinstance(meta, Mapping) else meta!r} lacks {', '.join(META_KEYS)}")
    report = CheckReport(source="sample", classes=classes)
    check_objects(report, "sample", boxes, labels, sample.get("iscrowd"), image.shape[:2],
                  [f"box {j}" for j in range(len(boxes))])
    for problem in report.problems:
        hint = " (x y w h boxes? expected x1 y1 x2 y2)" if "no area" in problem.message or "outside" in problem.message else ""
        problems.append(problem.message + hint)
    return problems


def check_transform(component: str, transform: Callable[[dict], dict]) -> list[CheckResult]:
    """Painted samples through ``transform``: boxes and masks on their objects, dtypes kept, meta updated, seeded results reproducible."""
    outputs, problems = [], {"alignment": [], "dtypes": [], "meta": []}

    def call(sample: dict) -> dict:
        if extra_samples(transform):  # Mosaic, MixUp: the other samples are painted the same way
            sample = with_mix_samples(sample, transform, [], [default_painted_sample()], start=dict)
        return transform(sample)

    for trial in range(TRANSFORM_TRIALS):
        before = default_painted_sample()
        try:
            with sample_seeded(0, 0, trial):
                after = call(default_painted_sample())
        except Exception as exc:
            return [failed(component, "call", f"a painted sample (96x128, 4 objects with masks) raised {error_text(exc)}")]
        outputs.append(after)
        where = f"seed {trial}"
        structure = _output_problems(after)
        if structure:
            problems["dtypes"] += [f"{where}: {p}" for p in structure]
            continue
        problems["alignment"] += [f"{where}: {p}" for p in alignment_problems(before, after)]
        problems["meta"] += [f"{where}: {p}" for p in _meta_problems(before, after)]
    results = [
        verdict(component, "boxes and masks on their objects", problems["alignment"],
                f"{TRANSFORM_TRIALS} painted samples: every box and mask covers its own object"),
        verdict(component, "dtypes", problems["dtypes"], "boxes float32, labels int64, masks uint8 at the image's size"),
        verdict(component, "meta", problems["meta"], "keeps image_id and file; records a changed image size in img_shape"),
    ]
    try:
        with sample_seeded(0, 0, 0):
            again = call(default_painted_sample())
    except Exception as exc:
        return [*results, failed(component, "seeded", f"raised {error_text(exc)}")]
    differing = [k for k in ("image", "boxes", "labels", "masks") if not _same(outputs[0].get(k), again.get(k))]
    results.append(verdict(component, "seeded", [f"the same seed gave a different {', '.join(differing)}"] if differing else [],
                           "the same seed gives the same sample"))
    return results


def _output_problems(sample: Any) -> list[str]:
    if not isinstance(sample, Mapping):
        return [f"returned {type(sample).__name__}, expected the sample dict"]
    image = sample.get("image")
    problems = []
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.dtype not in (np.uint8, np.float32):
        problems.append(f"image is {_described(image)}, expected H x W x 3 uint8 (or float32 after normalize)")
        return problems
    labels = np.asarray(sample.get("labels", []))
    if "masks" not in sample:
        problems.append("masks were dropped")
    for key, dtype in (("boxes", np.float32), ("labels", np.int64), ("masks", np.uint8), ("iscrowd", np.bool_)):
        value = sample.get(key)
        if value is not None and (not isinstance(value, np.ndarray) or value.dtype != dtype):
            problems.append(f"{key} became {_described(value)}, expected {np.dtype(dtype).name}")
    if problems:
        return problems
    count = len(labels)
    if sample["boxes"].shape != (count, 4):
        problems.append(f"boxes are {sample['boxes'].shape} for {count} labels")
    if sample["masks"].shape != (count, *image.shape[:2]):
        problems.append(f"masks are {sample['masks'].shape} for {count} labels on a {image.shape[0]}x{image.shape[1]} image")
    if "iscrowd" in sample and sample["iscrowd"].shape != (count,):
        problems.append(f"iscrowd has {len(sample['iscrowd'])} entries for {count} labels")
    return problems


def _meta_problems(before: dict, after: dict) -> list[str]:
    meta = after.get("meta")
    if not isinstance(meta, Mapping):
        return ["meta is gone"]
    problems = [f"meta lost '{k}'" for k in META_KEYS if k not in meta]
    shape = tuple(after["image"].shape[:2])
    labels = np.asarray(after["labels"]).astype(np.int64)
    kept = before["boxes"][labels] if len(labels) and 0 <= labels.min() and labels.max() < len(before["boxes"]) else None
    moved = shape != tuple(before["image"].shape[:2]) or not _same(kept, after["boxes"])
    if shape != tuple(before["image"].shape[:2]) and tuple(meta.get("img_shape", ())) != shape:
        problems.append(f"the image became {shape[0]}x{shape[1]} but meta['img_shape'] is {meta.get('img_shape')}")
    elif moved and dict(meta) == dict(before["meta"]):
        problems.append("boxes moved but meta records nothing (a flip, scale or crop belongs in meta)")
    return problems


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _described(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {' x '.join(map(str, value.shape)) or 'scalar'}"
    return type(value).__name__


def _sample_summary(sample: dict) -> str:
    image = sample["image"]
    count = len(sample["boxes"])
    masks = " and masks" if "masks" in sample else ""
    return (f"{image.shape[1]}x{image.shape[0]} image, {count} box{'' if count == 1 else 'es'}{masks} inside it, "
            f"labels in range, meta has {', '.join(META_KEYS)}")
