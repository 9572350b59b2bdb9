"""One door to ``COCOeval``: pycocotools' or faster-coco-eval's, the same numbers either way.

faster-coco-eval (the default) does COCOeval's per-image matching and the
accumulation in C++ and gives pycocotools' figures to within 1e-15
(``tests/test_coco_backend.py``; ``benchmarks/coco_eval.py`` times both).
``"pycocotools"`` stays for anyone who wants the reference implementation.

    >>> coco_gt = coco_from_dict(gt_dict, "faster_coco_eval")                     # doctest: +SKIP
    >>> evaluation = run_cocoeval(coco_gt, results, "bbox", image_ids, "faster_coco_eval")  # doctest: +SKIP
    >>> evaluation.stats[:12], evaluation.eval["precision"].shape                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import numbers
from collections.abc import Callable
from typing import Any, Literal

from detsdk.errors import DataError

Backend = Literal["faster_coco_eval", "pycocotools"]
BACKENDS: tuple[str, ...] = ("faster_coco_eval", "pycocotools")


def _api(backend: str) -> tuple[type, type]:
    """``(COCO, COCOeval)`` of a backend, imported on first use."""
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    raise DataError(f"COCO evaluation backend {backend!r}: expected one of {', '.join(BACKENDS)}")


def coco_from_dict(dataset: dict, backend: str) -> Any:
    """A ``COCO`` index over an in-memory dict (what ``COCO(file)`` does after ``json.load``)."""
    coco_class, _ = _api(backend)
    if backend == "faster_coco_eval":
        # faster-coco-eval indexes images by int id; say so instead of failing deep inside it.
        odd = [image["id"] for image in dataset.get("images", []) if not _is_integer(image["id"])]
        if odd:
            raise DataError(
                f"COCO evaluation: image ids must be integers for backend 'faster_coco_eval', got {odd[:3]}; "
                "use backend = \"pycocotools\""
            )
    coco = coco_class()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def run_cocoeval(
    coco_gt: Any,
    results: list[dict],
    iou_type: str,
    image_ids: list,
    backend: str,
    configure: Callable[[Any], None] | None = None,
) -> Any:
    """``COCOeval`` evaluate + accumulate, quietly; returns the evaluation (``.stats`` after ``summarize``).

    ``configure(params)`` may change the parameters first (IoU thresholds,
    categories, area ranges), as the error analysis does. Zero results are
    evaluated as an empty set: 0, or -1 where there is no ground truth.
    """
    coco_class, eval_class = _api(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            # loadRes writes ids and areas into the dicts it gets; give it copies.
            coco_dt = coco_gt.loadRes([dict(r) for r in results])
        else:
            coco_dt = coco_from_dict(
                {"images": list(coco_gt.dataset["images"]), "categories": coco_gt.dataset.get("categories", []),
                 "annotations": []},
                backend,
            )
        if backend == "faster_coco_eval":
            evaluation = eval_class(coco_gt, coco_dt, iou_type, print_function=print)
        else:
            evaluation = eval_class(coco_gt, coco_dt, iou_type)
        evaluation.params.imgIds = list(image_ids)
        if configure is not None:
            configure(evaluation.params)
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation


def results_for(iou_type: str, results: list[dict]) -> list[dict]:
    """Results in the shape ``loadRes`` needs for one iou type.

    For ``segm`` the ``bbox`` key is dropped (as MMDetection does): with it,
    ``loadRes`` would take the box area, not the mask area, for the
    small/medium/large split. For ``bbox`` results pass as-is; results with
    only a ``segmentation`` get their boxes from the mask, as in pycocotools.
    """
    if iou_type == "segm":
        if any("segmentation" not in r for r in results):
            raise DataError(
                "metric 'coco': iou_types includes 'segm' but some results have no 'segmentation' (masks)"
            )
        return [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    with_box = sum("bbox" in r for r in results)
    if with_box not in (0, len(results)) or (with_box == 0 and any("segmentation" not in r for r in results)):
        raise DataError("metric 'coco': bbox evaluation needs a 'bbox' in every result (or a segmentation in all)")
    return results


def summarize(evaluation: Any) -> str:
    """Run ``summarize()`` (fills ``.stats``) and return the table it prints."""
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluation.summarize()
    return summary.getvalue()


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
