"""The metric check: perfect detections score 1.0, empty ones 0.0, and nothing is remembered between runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from detsdk.data.loader import ANNOTATION_KEYS
from detsdk.testing.painted import PAINTED_BACKGROUND, PAINTED_OBJECTS, PAINTED_SIZE, painted_sample
from detsdk.testing.results import CheckResult, error_text, failed, skipped, verdict

TOLERANCE = 1e-6


class PaintedGroundTruth:
    """Three painted images as evaluation ground truth: a stand-in dataset with ``classes`` (one per object)."""

    classes = [f"object_{i}" for i in range(len(PAINTED_OBJECTS))]

    def __init__(self) -> None:
        self.samples = []
        for image_id, keep in enumerate(([0, 1, 2, 3], [1, 3], [0, 2])):
            sample = painted_sample([PAINTED_OBJECTS[i] for i in keep], *PAINTED_SIZE, PAINTED_BACKGROUND,
                                    file=f"painted_{image_id}.png")
            sample["labels"] = np.array(keep, np.int64)
            sample["meta"]["image_id"] = image_id
            self.samples.append(sample)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.samples[index]


def annotations_of(dataset: Any) -> list[dict]:
    """Each sample as evaluation sees it: the annotation keys and ``meta`` (with ``ori_shape``), no image."""
    annotations = []
    for index in range(len(dataset)):
        sample = dataset[index]
        kept = {k: np.array(v, copy=True) for k, v in sample.items() if k in ANNOTATION_KEYS}
        kept["meta"] = dict(sample.get("meta", {}))
        kept["meta"].setdefault("ori_shape", tuple(sample["image"].shape[:2]))
        annotations.append(kept)
    return annotations


def perfect_detections(annotations: Sequence[dict]) -> list[dict]:
    """The ground truth as detections with score 1.0 (crowd regions left out), masks when the ground truth has them."""
    detections = []
    for sample in annotations:
        crowd = np.asarray(sample.get("iscrowd", np.zeros(len(sample["labels"]), bool)), bool)
        keep = ~crowd
        detection = {"boxes": np.asarray(sample["boxes"], np.float64)[keep],
                     "scores": np.ones(int(keep.sum())), "labels": np.asarray(sample["labels"], np.int64)[keep]}
        if sample.get("masks") is not None:
            detection["masks"] = np.asarray(sample["masks"], np.uint8)[keep]
        detections.append(detection)
    return detections


def empty_detections(annotations: Sequence[dict]) -> list[dict]:
    """No detection on any image."""
    detections = []
    for sample in annotations:
        height, width = sample["meta"]["ori_shape"][:2]
        detections.append({"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64),
                           "masks": np.zeros((0, height, width), np.uint8)})
    return detections


def check_metric(component: str, build: Callable[[], Any], dataset: Any) -> list[CheckResult]:
    """Perfect detections of ``dataset``'s ground truth score 1.0; empty ones 0.0 on a new metric and after ``reset()``.

    The score is the first figure ``compute()`` returns (the one ``best.pt`` is chosen by).
    """
    try:
        annotations = annotations_of(dataset)
    except Exception as exc:
        return [failed(component, "ground truth", f"reading the ground-truth dataset raised {error_text(exc)}")]
    results = []
    first = _evaluate(component, "perfect detections", build, dataset, annotations, perfect_detections(annotations), 1.0)
    results.append(first.result)
    results.append(_evaluate(component, "empty detections", build, dataset, annotations,
                             empty_detections(annotations), 0.0).result)
    metric = first.metric
    if metric is None:
        return results
    if not callable(getattr(metric, "reset", None)):
        results.append(skipped(component, "reset", "has no reset() (the engine builds a new metric per evaluation)"))
        return results
    try:
        metric.reset()
        _process(metric, annotations, empty_detections(annotations))
        figures = metric.compute()
    except Exception as exc:
        results.append(failed(component, "reset", f"empty detections after reset() raised {error_text(exc)}"))
        return results
    results.append(_figure_result(component, "reset", figures, 0.0, "empty detections after reset() and a perfect run"))
    return results


class _Run:
    def __init__(self, result: CheckResult, metric: Any = None):
        self.result, self.metric = result, metric


def _evaluate(component, check, build, dataset, annotations, detections, expected) -> _Run:
    try:
        metric = build()
        if callable(getattr(metric, "bind_dataset", None)):
            metric.bind_dataset(dataset)
        _process(metric, annotations, detections)
        figures = metric.compute()
    except Exception as exc:
        return _Run(failed(component, check, f"raised {error_text(exc)}"))
    return _Run(_figure_result(component, check, figures, expected, f"on {len(annotations)} images"), metric)


def _figure_result(component: str, check: str, figures: Any, expected: float, what: str) -> CheckResult:
    if not isinstance(figures, dict) or not figures:
        return failed(component, check, f"compute() returned {type(figures).__name__}, expected a non-empty dict of floats")
    bad = [k for k, v in figures.items() if not isinstance(v, (int, float)) or isinstance(v, bool)]
    if bad:
        return failed(component, check, f"compute() gave non-numbers for {', '.join(bad[:3])}")
    name, value = next(iter(figures.items()))
    problems = [] if abs(float(value) - expected) <= TOLERANCE else [f"{name} is {float(value):.4g} {what}, expected {expected:g}"]
    if problems and expected == 0.0 and check == "reset":
        problems[0] += ": it remembers the earlier run"
    if problems and expected == 0.0 and check == "empty detections":
        problems[0] += " (state kept between metric objects?)"
    return verdict(component, check, problems, f"{name} = {float(value):g} {what}")


def _process(metric: Any, annotations: list[dict], detections: list[dict]) -> None:
    for start in range(0, len(annotations), 2):
        metric.process(annotations[start : start + 2], detections[start : start + 2])


