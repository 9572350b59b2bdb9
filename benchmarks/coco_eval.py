"""COCO box evaluation: faster-coco-eval against pycocotools, on the same synthetic set, in one process.

5,000 images (COCO val2017's size) with about 7 ground-truth boxes each over
80 categories, and exactly 20 detections per image (jittered copies of the
ground truth, wrong classes and background boxes), scored like a trained
detector's. Both sides do the same work, what ``CocoMetric.compute()`` does:
index the ground truth, ``loadRes``, ``evaluate``, ``accumulate``,
``summarize``. The twelve figures must agree within 1e-12; the script prints
both times and the ratio faster / pycocotools (goal <= 0.3).

Run from the repository root::

    python benchmarks/coco_eval.py [--images 5000 --detections 20 --rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from detsdk.evaluation.coco_backend import coco_from_dict, run_cocoeval, summarize


def synthetic_coco(images: int, detections: int, classes: int = 80, seed: int = 0) -> tuple[dict, list[dict]]:
    """COCO ground truth and ``detections`` results per image, 640×480 images."""
    rng = np.random.default_rng(seed)
    width, height = 640, 480
    gt_images, annotations, results = [], [], []
    for image_id in range(1, images + 1):
        gt_images.append({"id": image_id, "width": width, "height": height})
        count = int(rng.integers(1, 14))
        sizes = np.exp(rng.uniform(np.log(8), np.log(400), (count, 2)))
        corners = rng.uniform(0, 1, (count, 2)) * (np.array([width, height]) - sizes)
        labels = rng.integers(1, classes + 1, count)
        for box_xy, box_wh, label in zip(corners, sizes, labels):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                "bbox": [*map(float, box_xy), *map(float, box_wh)],
                                "area": float(box_wh[0] * box_wh[1]), "iscrowd": int(rng.random() < 0.01)})
        source = rng.integers(0, count, detections)
        jitter = rng.normal(0, 0.1, (detections, 4)) * np.tile(sizes[source], 2)
        boxes = np.concatenate([corners[source], sizes[source]], axis=1) + jitter
        background = rng.random(detections) < 0.3
        boxes[background] = np.concatenate([rng.uniform(0, 400, (background.sum(), 2)),
                                            rng.uniform(8, 200, (background.sum(), 2))], axis=1)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
        wrong = rng.random(detections) < 0.15
        det_labels = np.where(wrong, rng.integers(1, classes + 1, detections), labels[source])
        scores = np.where(background | wrong, rng.uniform(0, 0.6, detections), rng.uniform(0.2, 1.0, detections))
        for box, label, score in zip(boxes, det_labels, scores):
            results.append({"image_id": image_id, "category_id": int(label),
                            "bbox": [round(float(v), 2) for v in box], "score": round(float(score), 4)})
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in range(1, classes + 1)]
    return {"images": gt_images, "annotations": annotations, "categories": categories}, results


def evaluate(gt_json: str, results_json: str, backend: str) -> tuple[float, np.ndarray]:
    """Seconds for one full evaluation, and the twelve figures."""
    gt, results = json.loads(gt_json), json.loads(results_json)  # parsing is not timed: both read the same file
    started = time.perf_counter()
    coco_gt = coco_from_dict(gt, backend)
    evaluation = run_cocoeval(coco_gt, results, "bbox", [image["id"] for image in gt["images"]], backend)
    summarize(evaluation)
    return time.perf_counter() - started, np.asarray(evaluation.stats[:12], dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=20, help="detections per image")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    args = parser.parse_args()

    gt, results = synthetic_coco(args.images, args.detections)
    gt_json, results_json = json.dumps(gt), json.dumps(results)
    print(f"{args.images} images, {len(gt['annotations'])} ground-truth boxes, {len(results)} detections")
    times: dict[str, list[float]] = {"pycocotools": [], "faster_coco_eval": []}
    figures: dict[str, np.ndarray] = {}
    for round_index in range(args.rounds):
        order = list(times) if round_index % 2 == 0 else list(times)[::-1]
        for backend in order:
            seconds, figures[backend] = evaluate(gt_json, results_json, backend)
            times[backend].append(seconds)
            print(f"round {round_index + 1}: {backend:<17} {seconds:8.2f} s")
    difference = float(np.abs(figures["faster_coco_eval"] - figures["pycocotools"]).max())
    reference, faster = statistics.median(times["pycocotools"]), statistics.median(times["faster_coco_eval"])
    print()
    print("| evaluator | median s | figures (AP, AP50, AP75) |")
    print("| --- | ---: | --- |")
    for backend, seconds in (("pycocotools", reference), ("faster_coco_eval", faster)):
        print(f"| {backend} | {seconds:.2f} | {', '.join(f'{v:.4f}' for v in figures[backend][:3])} |")
    ratio = faster / reference
    print(f"| **ratio faster / pycocotools** | **{ratio:.3f}** | goal <= 0.3: {'met' if ratio <= 0.3 else 'NOT met'} |")
    print(f"largest difference over the twelve figures: {difference:.2e} (must be <= 1e-12)")


if __name__ == "__main__":
    main()
