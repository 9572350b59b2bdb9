"""All the analysis of one evaluated ``coco`` metric, written into a folder (``sdk analyze``, a run's ``plots/``).

    >>> metric.compute()                                        # doctest: +SKIP
    >>> report = analyze_evaluation(metric, Path("analysis"))   # doctest: +SKIP
    >>> report.files, report.notes                              # doctest: +SKIP

Writes ``confusion_matrix.png/.json``, per iou type ``<type>_pr_curves.png``,
``<type>_class_ap.png``, ``<type>_pr_curves.json``, ``<type>_error_breakdown.png/.json``,
and ``worst_images/`` (the images with the most false positives plus
false negatives at IoU 0.5 and score 0.3, drawn) with ``worst_images.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np

from detsdk.analysis.boxes import per_image_boxes
from detsdk.analysis.confusion import confusion_matrix, match_image, worst_images
from detsdk.analysis.error_breakdown import error_breakdown
from detsdk.analysis.pr_curves import pr_curves
from detsdk.evaluation.coco_backend import results_for

ImageReader = Callable[[Any], "np.ndarray | None"]


@attrs.frozen
class AnalysisReport:
    """The files written, and one line for each thing left out and why."""

    files: list[Path]
    notes: list[str]


def analyze_evaluation(metric: Any, out_dir: Path, iou_thr: float = 0.5, score_thr: float = 0.3,
                       worst: int = 8, error_analysis: bool = True) -> AnalysisReport:
    """Analyse what ``metric.compute()`` last evaluated; the metric's bound ``dataset`` supplies the worst images.

    ``metric`` is a ``coco`` metric after ``compute()`` (it keeps its ground
    truth, results and ``COCOeval`` objects); any other metric gives a note
    and no files. ``error_analysis = False`` leaves out the error breakdown
    (two COCO evaluations per class), for quick looks.
    """
    evaluations = getattr(metric, "evaluations", None)
    if not evaluations or getattr(metric, "ground_truth", None) is None:
        return AnalysisReport([], [f"analysis: metric {type(metric).__name__} keeps no COCO evaluation to analyse"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from detsdk.analysis import plots  # matplotlib only when there is something to draw

    ground_truth, results, image_ids = metric.ground_truth, metric.results, metric.image_ids
    categories = list(metric.categories)
    classes = [name for _, name in categories]
    files, notes = [], []

    images = per_image_boxes(ground_truth, results, categories, image_ids)
    matrix = confusion_matrix(images, classes, iou_thr, score_thr)
    files += [_write_json(out_dir / "confusion_matrix.json", matrix.to_json()),
              plots.plot_confusion_matrix(matrix, out_dir / "confusion_matrix.png")]
    for iou_type, evaluation in evaluations.items():
        curves = pr_curves(evaluation, categories)
        files += [_write_json(out_dir / f"{iou_type}_pr_curves.json", curves.to_json()),
                  plots.plot_pr_curves(curves, out_dir / f"{iou_type}_pr_curves.png"),
                  plots.plot_class_ap(curves, out_dir / f"{iou_type}_class_ap.png")]
        if error_analysis:
            breakdown = error_breakdown(ground_truth, results_for(iou_type, results), iou_type, image_ids,
                                        metric.backend, categories)
            files += [_write_json(out_dir / f"{iou_type}_error_breakdown.json", breakdown.to_json()),
                      plots.plot_error_breakdown(breakdown, out_dir / f"{iou_type}_error_breakdown.png")]

    ranked = worst_images(matrix.image_errors, worst)
    by_id = {image.image_id: image for image in images}
    reader = dataset_image_reader(getattr(metric, "dataset", None), ground_truth)
    listed, missing = [], 0
    for rank, errors in enumerate(ranked, start=1):
        entry = attrs.asdict(errors)
        picture = reader(errors.image_id)
        if picture is None:
            missing += 1
        else:
            boxes = by_id[errors.image_id]
            drawn = plots.draw_errors(picture, boxes, match_image(boxes, iou_thr, score_thr), classes)
            path = out_dir / "worst_images" / f"{rank:02d}_image_{errors.image_id}.png"
            path.parent.mkdir(exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            entry["file"] = str(path.relative_to(out_dir))
            files.append(path)
        listed.append(entry)
    files.append(_write_json(out_dir / "worst_images.json", listed))
    if missing:
        notes.append(f"analysis: {missing} of the {len(ranked)} worst images not drawn (image files not found)")
    return AnalysisReport(files, notes)


def dataset_image_reader(dataset: Any, ground_truth: dict) -> ImageReader:
    """``image_id -> RGB image or None``: a COCO image's ``file_name`` under ``dataset.images``, else the
    dataset sample whose ``meta['image_id']`` the metric recorded as ``source_image_id``."""
    by_id = {image["id"]: image for image in ground_truth.get("images", [])}
    root = getattr(dataset, "images", None)
    index_of: dict[Any, int] | None = None

    def read(image_id: Any) -> np.ndarray | None:
        nonlocal index_of
        info = by_id.get(image_id, {})
        if "file_name" in info and isinstance(root, str):
            path = os.path.join(root, info["file_name"])
            image = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
            return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        source = info.get("source_image_id")
        if source is None or dataset is None or not hasattr(dataset, "get_annotations"):
            return None
        if index_of is None:  # annotations only: no image is decoded to build the index
            index_of = {dataset.get_annotations(i)["meta"].get("image_id"): i for i in range(len(dataset))}
        return dataset[index_of[source]]["image"] if source in index_of else None

    return read


def _write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")
    return path
