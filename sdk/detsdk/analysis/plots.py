"""Pictures of the analysis numbers (matplotlib, Agg): confusion matrix, PR curves, AP per class, error breakdown."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detsdk.analysis.boxes import ImageBoxes
from detsdk.analysis.confusion import ConfusionMatrix, ImageMatches
from detsdk.analysis.error_breakdown import ERROR_TYPES, ErrorBreakdown
from detsdk.analysis.pr_curves import CURVE_IOUS, PRCurves

# pycocotools' analyze colours, one per error type (C75 white-ish to FN orange).
ERROR_COLOURS = [(1, 1, 1), (0.31, 0.51, 0.74), (0.75, 0.31, 0.30), (0.36, 0.90, 0.38), (0.50, 0.39, 0.64),
                 (1, 0.6, 0), (0.85, 0.85, 0.85)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path, tight: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:  # measuring every label is what makes big figures slow; those set their margins instead
        figure.tight_layout()
    figure.savefig(path, dpi=80)
    _pyplot().close(figure)
    return path


def plot_confusion_matrix(matrix: ConfusionMatrix, path: Path) -> Path:
    """The row-normalised matrix as percentages, background last (MMDetection's picture)."""
    plt = _pyplot()
    labels = [*matrix.classes, "background"]
    side = min(max(6.0, 0.25 * len(labels) + 2.5), 24.0)
    figure, axes = plt.subplots(figsize=(side, side * 0.9))
    many = len(labels) > 30
    if many:  # label margins of about 1.3 inches, set by hand: tight_layout would measure every label
        margin = 1.3 / side
        figure.subplots_adjust(left=margin, right=0.97, top=1 - margin, bottom=0.03)
    normalised = matrix.normalised() * 100
    image = axes.imshow(normalised, cmap="plasma", vmin=0, vmax=100)
    figure.colorbar(image, ax=axes, fraction=0.046)
    fontsize = 8 if len(labels) <= 30 else 6
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="left", rotation_mode="anchor", fontsize=fontsize)
    axes.set_yticks(range(len(labels)), labels, fontsize=fontsize)
    axes.tick_params(top=True, bottom=False, labeltop=True, labelbottom=False)
    axes.set_xlabel("predicted")
    axes.set_ylabel("ground truth")
    if len(labels) <= 30:
        for (row, column), value in np.ndenumerate(normalised):
            axes.text(column, row, f"{value:.0f}", ha="center", va="center", color="w", fontsize=7)
    figure.suptitle(f"confusion matrix (%, rows sum to 100; IoU {matrix.iou_thr}, score {matrix.score_thr})",
                    fontsize=9, y=0.995)
    return _save(figure, path, tight=not many)


def plot_pr_curves(curves: PRCurves, path: Path) -> Path:
    """One panel per IoU (0.5, 0.75): each class's curve, and the mean over classes in bold."""
    plt = _pyplot()
    figure, panels = plt.subplots(1, len(CURVE_IOUS), figsize=(11, 4.5), sharey=True)
    for axes, iou in zip(panels, CURVE_IOUS):
        precision = curves.precision[iou]
        present = curves.ap[:] > -1
        for k in np.flatnonzero(present):
            label = f"{curves.classes[k]} {curves.ap_at[iou][k]:.3f}" if present.sum() <= 12 else None
            axes.plot(curves.recall, precision[k], linewidth=0.8, alpha=0.7, label=label)
        if present.any():
            mean = precision[present].mean(axis=0)
            axes.plot(curves.recall, mean, color="k", linewidth=2.5,
                      label=f"all classes {curves.ap_at[iou][present].mean():.3f}")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_xlabel("recall")
        axes.set_title(f"precision-recall at IoU {iou}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="lower left")
    panels[0].set_ylabel("precision")
    return _save(figure, path)


def plot_class_ap(curves: PRCurves, path: Path) -> Path:
    """AP at IoU 0.50:0.95 and at 0.5 per class, as horizontal bars (classes without ground truth left out)."""
    plt = _pyplot()
    present = np.flatnonzero(curves.ap > -1)
    order = present[np.argsort(curves.ap[present])]
    figure, axes = plt.subplots(figsize=(7, max(2.5, 0.22 * len(order) + 1)))
    positions = np.arange(len(order))
    axes.barh(positions, curves.ap_at[0.5][order], color=(0.75, 0.85, 0.95), label="AP50")
    axes.barh(positions, curves.ap[order], color=(0.31, 0.51, 0.74), label="AP 0.50:0.95")
    axes.set_yticks(positions, [curves.classes[k] for k in order], fontsize=7)
    axes.set_xlim(0, 1)
    axes.set_xlabel("AP")
    axes.set_title("AP per class")
    axes.legend(fontsize=8, loc="lower right")
    if len(order) > 30:
        figure.subplots_adjust(left=0.22, right=0.97, top=0.98, bottom=0.04)
    return _save(figure, path, tight=len(order) <= 30)


def plot_error_breakdown(breakdown: ErrorBreakdown, path: Path) -> Path:
    """Left: the seven nested curves over all classes (pycocotools' picture); right: per-class AP of each."""
    plt = _pyplot()
    present = np.flatnonzero(breakdown.has_ground_truth)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, max(4.5, 0.22 * len(present) + 1)),
                                         gridspec_kw={"width_ratios": [1, 1.2]})
    mean_curves = breakdown.curves[:, :, present].mean(axis=2) if present.size else breakdown.curves[:, :, :0].sum(2)
    previous = np.zeros_like(breakdown.recall)
    for t, name in enumerate(ERROR_TYPES):
        left.fill_between(breakdown.recall, previous, mean_curves[t], color=ERROR_COLOURS[t],
                          label=f"[{breakdown.overall[t]:.3f}] {name}")
        left.plot(breakdown.recall, mean_curves[t], color="k", linewidth=0.5)
        previous = mean_curves[t]
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.set_xlabel("recall")
    left.set_ylabel("precision")
    left.set_title("error breakdown, all classes")
    left.legend(fontsize=8, loc="lower left")
    ap = breakdown.ap[:, present]
    positions = np.arange(len(present))
    start = np.zeros(len(present))
    for t, name in enumerate(ERROR_TYPES):
        right.barh(positions, ap[t] - start, left=start, color=ERROR_COLOURS[t], edgecolor="k", linewidth=0.3,
                   label=name)
        start = ap[t]
    right.set_yticks(positions, [breakdown.classes[k] for k in present], fontsize=7)
    right.set_xlim(0, 1)
    right.set_xlabel("AP (each band: what that error costs)")
    right.set_title("per class")
    if len(present) > 30:
        figure.subplots_adjust(left=0.05, right=0.98, wspace=0.3, top=0.97, bottom=0.05)
    return _save(figure, path, tight=len(present) <= 30)


OUTCOME_COLOURS = {"gt": (0, 200, 0), "tp": (0, 120, 255), "fp": (255, 0, 0), "fn": (255, 160, 0)}


def draw_errors(image: np.ndarray, boxes: ImageBoxes, matches: ImageMatches, classes: list[str]) -> np.ndarray:
    """An RGB copy of ``image``: found ground truth green, missed orange; correct detections blue, false ones red."""
    zoom = max(1, 384 // max(1, min(image.shape[:2])))
    canvas = np.ascontiguousarray(cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
                                  if zoom > 1 else image.copy())
    kept = matches.kept
    items = [(box, label, None, "gt" if hit else "fn")
             for box, label, hit in zip(boxes.gt_boxes, boxes.gt_labels, matches.found)]
    items += [(box, label, score, "tp" if hit else "fp")
              for box, label, score, hit in zip(boxes.boxes[kept], boxes.labels[kept], boxes.scores[kept], matches.correct)]
    for box, label, score, outcome in items:
        colour = OUTCOME_COLOURS[outcome]
        x1, y1, x2, y2 = (int(round(v * zoom)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        text = f"{outcome.upper()} {classes[int(label)]}" + ("" if score is None else f" {score:.2f}")
        cv2.putText(canvas, text, (x1 + 2, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
    return canvas
