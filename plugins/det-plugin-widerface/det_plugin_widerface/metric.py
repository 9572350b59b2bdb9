"""WIDER FACE AP: MMDetection's VOC-style AP at IoU 0.5, and the official easy/medium/hard AP.

Two evaluations of the same detections:

- ``mAP`` (also ``AP50``): what MMDetection reports for WIDER FACE, the VOC
  AP at IoU 0.5 over the evaluated images, invalid faces as ignore regions
  (``detsdk.evaluation.ap``): ``ap_mode = "area"`` as MMDetection 2.x,
  ``"11points"`` as MMDetection 3.x's ``VOCMetric(eval_mode='11points')``;
- ``AP_easy``, ``AP_medium``, ``AP_hard`` when ``gt_dir`` holds the
  official ground truth (``wider_face_val.mat``, ``wider_easy_val.mat``,
  ``wider_medium_val.mat``, ``wider_hard_val.mat``): the algorithm of the
  official ``evaluation.py`` (WiderFace-Evaluation), step for step — scores
  normalised to [0, 1] over all detections, 1000 score thresholds, faces
  outside a setting's ``gt_list`` ignored, IoU with the +1 pixel convention,
  VOC area AP of the resulting curve. Detections are ranked by score first,
  as the official code assumes of its input files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torchvision.ops import box_iou

from detsdk.errors import DataError, RecipeError, warn
from detsdk.evaluation.ap import ImageDetections, average_precision, evaluate_detections, mean_over_classes

SETTINGS = ("easy", "medium", "hard")
THRESHOLDS = 1000  # the official evaluation's thresh_num


class WiderFaceMetric:
    """AP for WIDER FACE; see the module docstring for the keys.

    Args:
        iou_thr: the IoU a detection must reach (0.5, as MMDetection and the official evaluation use).
        gt_dir: a folder with the official ``.mat`` ground truth (``eval_tools/ground_truth``);
            "" skips the easy/medium/hard evaluation.
        ap_mode: how ``mAP`` integrates the precision-recall curve: ``"area"`` (MMDetection 2.x)
            or ``"11points"`` (MMDetection 3.x's WIDER FACE configs). The official settings use area.
    """

    def __init__(self, iou_thr: float = 0.5, gt_dir: str = "", ap_mode: Literal["area", "11points"] = "area"):
        if isinstance(iou_thr, bool) or not isinstance(iou_thr, (int, float)) or not 0 < iou_thr <= 1:
            raise RecipeError(f"metric 'widerface': iou_thr = {iou_thr!r}: expected a number in (0, 1]")
        self.iou_thr = float(iou_thr)
        self.gt_dir = str(gt_dir)
        self.ap_mode = ap_mode
        if self.gt_dir:
            _check_gt_dir(Path(self.gt_dir))
        self.classes: list[str] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every processed image."""
        self._images: dict[Any, ImageDetections] = {}
        self._detections: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def bind_dataset(self, dataset: Any) -> None:
        """Take the class names from the evaluated dataset."""
        self.classes = [str(c) for c in dataset.classes]

    def process(self, samples: Sequence[dict], detections: Sequence[dict]) -> None:
        """Add one batch: annotation samples and detections, both in original image pixels."""
        if len(samples) != len(detections):
            raise DataError(f"metric 'widerface': {len(samples)} samples but {len(detections)} detection sets")
        for sample, detection in zip(samples, detections):
            meta = sample.get("meta", {})
            image_id = meta.get("image_id", len(self._images))
            if image_id in self._images:
                continue
            image = ImageDetections.from_sample(sample, detection)
            self._images[image_id] = image
            if "file" in meta:  # the official ground truth is keyed by event folder and file stem
                path = Path(meta["file"])
                self._detections[(path.parent.name, path.stem)] = (image.det_boxes, image.det_scores)

    def compute(self) -> dict[str, float]:
        """``mAP``, ``AP<iou_thr in percent>`` (the same value), ``recall``, and the official settings' AP."""
        images = list(self._images.values())
        num_classes = len(self.classes) if self.classes else 1
        results = evaluate_detections(images, num_classes, self.iou_thr, modes=(self.ap_mode,))
        ap = mean_over_classes([r.ap[self.ap_mode] for r in results])
        metrics = {"mAP": ap, f"AP{round(self.iou_thr * 100)}": ap, "recall": mean_over_classes([r.recall for r in results])}
        if self.gt_dir:
            metrics.update(official_ap(self._detections, Path(self.gt_dir), self.iou_thr))
        return metrics


def _check_gt_dir(gt_dir: Path) -> None:
    missing = [n for n in ("wider_face_val.mat", *(f"wider_{s}_val.mat" for s in SETTINGS)) if not (gt_dir / n).is_file()]
    if missing:
        raise RecipeError(
            f"metric 'widerface': gt_dir = {str(gt_dir)!r} lacks {', '.join(missing)} "
            "(the official eval_tools/ground_truth files)"
        )


def _text(value: Any) -> str:
    """A MATLAB string as loadmat returns it (nested 1-element arrays) as ``str``."""
    while isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return str(value)


def _cells(value: Any) -> list:
    """A MATLAB cell array (an object array of any shape) as a flat list of its elements."""
    return list(np.asarray(value, dtype=object).reshape(-1))


def load_ground_truth(gt_dir: Path) -> dict[str, dict[tuple[str, str], np.ndarray]]:
    """The official ground truth: ``"boxes"`` (x y w h per image) and each setting's 1-based kept face indices."""
    from scipy.io import loadmat

    face = loadmat(str(gt_dir / "wider_face_val.mat"))
    keys = []
    boxes: dict[tuple[str, str], np.ndarray] = {}
    for event, files, faces in zip(_cells(face["event_list"]), _cells(face["file_list"]), _cells(face["face_bbx_list"])):
        for file, box in zip(_cells(files), _cells(faces)):
            key = (_text(event), _text(file))
            keys.append(key)
            boxes[key] = np.asarray(box, dtype=np.float64).reshape(-1, 4)
    truth = {"boxes": boxes}
    for setting in SETTINGS:
        gt_list = loadmat(str(gt_dir / f"wider_{setting}_val.mat"))["gt_list"]
        kept = [np.asarray(k, dtype=np.int64).reshape(-1) for image_lists in _cells(gt_list) for k in _cells(image_lists)]
        if len(kept) != len(keys):
            raise DataError(f"{gt_dir}/wider_{setting}_val.mat lists {len(kept)} images, wider_face_val.mat {len(keys)}")
        truth[setting] = dict(zip(keys, kept))
    return truth


def official_ap(
    detections: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], gt_dir: Path, iou_thr: float = 0.5
) -> dict[str, float]:
    """``AP_easy``, ``AP_medium``, ``AP_hard`` over the images in ``detections`` (event, stem) -> (x1y1x2y2, scores)."""
    truth = load_ground_truth(gt_dir)
    evaluated = [key for key in truth["boxes"] if key in detections]
    unknown = len(detections) - len(evaluated)
    if not evaluated:
        raise DataError(
            f"metric 'widerface': none of the {len(detections)} evaluated images is in {gt_dir}/wider_face_val.mat "
            "(images are matched by event folder and file name)"
        )
    if unknown or len(evaluated) != len(truth["boxes"]):
        warn(
            f"metric 'widerface': easy/medium/hard over {len(evaluated)} of the {len(truth['boxes'])} images of the "
            f"official ground truth ({unknown} evaluated image(s) are not in it)"
        )
    scores = np.concatenate([detections[k][1] for k in evaluated]) if evaluated else np.zeros(0)
    low, high = (float(scores.min()), float(scores.max())) if scores.size else (0.0, 1.0)
    span = high - low if high > low else 1.0
    metrics = {}
    for setting in SETTINGS:
        curve = np.zeros((THRESHOLDS, 2))
        faces = 0
        for key in evaluated:
            kept = truth[setting][key]
            faces += len(kept)
            boxes, det_scores = detections[key]
            gt = truth["boxes"][key]
            if len(gt) == 0 or len(boxes) == 0:
                continue
            counted = np.zeros(len(gt), dtype=bool)
            counted[kept - 1] = True
            curve += _image_curve(boxes, (det_scores - low) / span, gt, counted, iou_thr)
        proposals, recalled = curve[:, 0], curve[:, 1]
        precision = np.divide(recalled, proposals, out=np.zeros(THRESHOLDS), where=proposals > 0)
        recall = recalled / faces if faces else np.zeros(THRESHOLDS)
        metrics[f"AP_{setting}"] = average_precision(recall, precision, "area") if faces else math.nan
    return metrics


def _image_curve(
    boxes: np.ndarray, scores: np.ndarray, gt_xywh: np.ndarray, counted: np.ndarray, iou_thr: float
) -> np.ndarray:
    """The official ``image_eval`` + ``img_pr_info``: (proposals, recalled faces) at each threshold."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    gt = np.concatenate([gt_xywh[:, :2], gt_xywh[:, :2] + gt_xywh[:, 2:]], axis=1)
    # The official Cython bbox_overlaps counts pixels inclusively: widths are x2 - x1 + 1.
    plus_one = np.array([0.0, 0.0, 1.0, 1.0])
    ious = box_iou(torch.from_numpy(boxes + plus_one), torch.from_numpy(gt + plus_one)).numpy()
    recall_state = np.zeros(len(gt))  # 1 recalled, -1 matched an ignored face
    proposal = np.ones(len(boxes))
    recalled_after = np.zeros(len(boxes))
    for h in range(len(boxes)):
        best = int(ious[h].argmax())
        if ious[h, best] >= iou_thr:
            if not counted[best]:
                recall_state[best] = -1
                proposal[h] = -1
            elif recall_state[best] == 0:
                recall_state[best] = 1
        recalled_after[h] = (recall_state == 1).sum()
    curve = np.zeros((THRESHOLDS, 2))
    cumulative_proposals = np.cumsum(proposal == 1)
    for t in range(THRESHOLDS):
        above = np.flatnonzero(scores >= 1 - (t + 1) / THRESHOLDS)
        if len(above):
            last = above[-1]
            curve[t] = cumulative_proposals[last], recalled_after[last]
    return curve
