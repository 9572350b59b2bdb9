"""``sdk data stats``: class counts and box-size and aspect-ratio histograms of a dataset.

Annotations are read without decoding images where the dataset allows it
(``get_annotations``). Crowd regions are counted apart and left out of the
histograms.

    >>> stats = collect_stats(dataset)            # doctest: +SKIP
    >>> print(stats.table()); write_plots(stats, Path("stats"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np

from detsdk.builtin.data.wrappers import annotations_of

# COCO's size classes: small objects are under 32² pixels, large over 96².
SMALL, LARGE = 32, 96


@attrs.define
class DatasetStats:
    """Per-box arrays (non-crowd boxes) and per-class counts of one dataset split."""

    classes: list[str]
    num_images: int
    labels: np.ndarray  # int64, one per box
    widths: np.ndarray  # float64 pixels, one per box
    heights: np.ndarray
    crowd: np.ndarray  # int64, crowd regions per class
    empty_images: int  # images without a non-crowd box

    def counts(self) -> np.ndarray:
        """Boxes per class."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def table(self) -> str:
        """A per-class table: boxes, share, crowd regions, median size, small/medium/large counts."""
        width = max([len("class"), *(len(c) for c in self.classes)])
        sizes = np.sqrt(self.widths * self.heights)
        counts = self.counts()
        total = max(int(counts.sum()), 1)
        lines = [f"{'class':<{width}}  {'boxes':>7}  {'share':>6}  {'crowd':>6}  {'median size':>11}  "
                 f"{'small':>6}  {'medium':>6}  {'large':>6}"]
        for label, name in enumerate(self.classes):
            own = sizes[self.labels == label]
            median = f"{np.median(own):.1f}" if len(own) else "-"
            lines.append(
                f"{name:<{width}}  {counts[label]:>7}  {counts[label] / total:>6.1%}  {self.crowd[label]:>6}  "
                f"{median:>11}  {int((own < SMALL).sum()):>6}  {int(((own >= SMALL) & (own < LARGE)).sum()):>6}  "
                f"{int((own >= LARGE).sum()):>6}"
            )
        lines.append(f"{self.num_images} images ({self.empty_images} without boxes), {int(counts.sum())} boxes, "
                     f"{int(self.crowd.sum())} crowd regions; size = sqrt(width x height) in pixels")
        return "\n".join(lines)


def collect_stats(dataset: Any) -> DatasetStats:
    """Read every item's annotations (boxes in original pixels) into ``DatasetStats``."""
    classes = [str(c) for c in dataset.classes]
    labels, boxes, crowd, empty = [], [], np.zeros(len(classes), dtype=np.int64), 0
    for index in range(len(dataset)):
        sample = annotations_of(dataset, index)
        item_boxes = np.asarray(sample.get("boxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
        item_labels = np.asarray(sample.get("labels", np.zeros(0)), dtype=np.int64).reshape(-1)
        is_crowd = np.asarray(sample.get("iscrowd", np.zeros(len(item_labels))), dtype=bool).reshape(-1)
        np.add.at(crowd, item_labels[is_crowd], 1)
        labels.append(item_labels[~is_crowd])
        boxes.append(item_boxes[~is_crowd])
        empty += int(not (~is_crowd).any())
    boxes_array = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    return DatasetStats(
        classes=classes,
        num_images=len(dataset),
        labels=np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64),
        widths=boxes_array[:, 2] - boxes_array[:, 0],
        heights=boxes_array[:, 3] - boxes_array[:, 1],
        crowd=crowd,
        empty_images=empty,
    )


def write_plots(stats: DatasetStats, out_dir: Path) -> list[Path]:
    """``class_counts.png``, ``box_sizes.png`` and ``aspect_ratios.png`` in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    figure, axes = plt.subplots(figsize=(max(6, 0.4 * len(stats.classes) + 2), 4))
    axes.bar(range(len(stats.classes)), stats.counts(), color="#0082c8")
    axes.set_xticks(range(len(stats.classes)), stats.classes, rotation=60 if len(stats.classes) > 8 else 0,
                    ha="right" if len(stats.classes) > 8 else "center", fontsize=8)
    axes.set_ylabel("boxes")
    axes.set_title(f"boxes per class ({stats.num_images} images)")
    written.append(_save(figure, out_dir / "class_counts.png", plt))

    valid = (stats.widths > 0) & (stats.heights > 0)
    sizes = np.sqrt(stats.widths[valid] * stats.heights[valid])
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(sizes, bins=40, color="#3cb44b")
    for edge in (SMALL, LARGE):
        left.axvline(edge, color="gray", linestyle="--", linewidth=1)
    left.set_xlabel("sqrt(width x height), pixels (dashed: COCO small | medium | large)")
    left.set_ylabel("boxes")
    right.hist([stats.widths[valid], stats.heights[valid]], bins=40, label=["width", "height"])
    right.set_xlabel("pixels")
    right.legend()
    figure.suptitle("box sizes")
    written.append(_save(figure, out_dir / "box_sizes.png", plt))

    figure, axes = plt.subplots(figsize=(7, 4))
    ratios = stats.heights[valid] / stats.widths[valid]
    axes.hist(np.log2(ratios), bins=40, color="#f58231")
    ticks = np.array([-3, -2, -1, 0, 1, 2, 3])
    axes.set_xticks(ticks, [f"{2.0 ** t:g}" for t in ticks])
    axes.set_xlabel("aspect ratio height / width (log scale)")
    axes.set_ylabel("boxes")
    axes.set_title("box aspect ratios")
    written.append(_save(figure, out_dir / "aspect_ratios.png", plt))
    return written


def _save(figure, path: Path, plt) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
