"""Compare an exported detector with its PyTorch model on the same images, in original pixels."""

from __future__ import annotations

import attrs
import cv2
import numpy as np

from detsdk.detections import Detections

# Sample image sizes (height, width): neither is the trace size nor a multiple of 32.
SAMPLE_SIZES = ((240, 328), (300, 212))


@attrs.frozen
class Tolerance:
    """Largest allowed differences: box corners in pixels, scores, and the share of a mask's pixels."""

    box: float = 0.05
    score: float = 0.001
    mask: float = 0.01


@attrs.frozen
class Differences:
    """The largest differences found over all images, and detections one side has and the other has not."""

    box: float = 0.0
    score: float = 0.0
    mask: float = 0.0
    unmatched: int = 0
    compared: int = 0

    def within(self, tolerance: Tolerance) -> bool:
        """Whether every difference is within ``tolerance`` and every detection found its counterpart."""
        return (self.unmatched == 0 and self.box <= tolerance.box and self.score <= tolerance.score
                and self.mask <= tolerance.mask)

    def merged(self, other: Differences) -> Differences:
        """The largest of both, counts added."""
        return Differences(max(self.box, other.box), max(self.score, other.score), max(self.mask, other.mask),
                           self.unmatched + other.unmatched, self.compared + other.compared)

    def describe(self) -> str:
        """One line: the largest box, score and mask differences and the unmatched count."""
        return (f"largest box difference {self.box:.4g} px, score {self.score:.4g}, mask {self.mask:.4g} "
                f"(share of a mask's pixels), {self.unmatched} unmatched of {self.compared} detections")


def sample_images(sizes=SAMPLE_SIZES, seed: int = 0) -> list[np.ndarray]:
    """Deterministic H×W×3 uint8 RGB images of filled rectangles and ellipses on a smooth background."""
    rng = np.random.default_rng(seed)
    images = []
    for height, width in sizes:
        ys, xs = np.mgrid[0:height, 0:width]
        image = np.stack([(xs * 255 // max(width - 1, 1)), (ys * 255 // max(height - 1, 1)),
                          np.full_like(xs, 96)], axis=-1).astype(np.uint8)
        for _ in range(6):
            x1, y1 = int(rng.integers(0, width - 16)), int(rng.integers(0, height - 16))
            x2, y2 = int(min(width, x1 + rng.integers(12, width // 2))), int(min(height, y1 + rng.integers(12, height // 2)))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness=-1)
            else:
                cv2.ellipse(image, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2), 0, 0, 360, colour, -1)
        images.append(image)
    return images


def one_way(a: Detections, b: Detections, tolerance: Tolerance) -> Differences:
    """Each detection of ``a`` against its nearest one of ``b`` with the same label.

    Nearest: the smallest largest-corner distance, scores breaking ties (untrained models
    give many overlapping and even empty boxes, so IoU would pair the wrong ones). A
    detection whose score is within ``tolerance.score`` of ``b``'s lowest sits at the edge of
    the score threshold or top-k, where a tiny numeric difference may drop it on one side:
    it is left out when its nearest counterpart is not within ``tolerance.box``.
    """
    boxes = scores = masks = 0.0
    unmatched = 0
    edge = float(b.scores.min()) if len(b) else 0.0
    for i in range(len(a)):
        at_edge = a.scores[i] <= edge + tolerance.score
        candidates = np.where(b.labels == a.labels[i])[0]
        if not len(candidates):
            unmatched += int(not at_edge)
            continue
        distance = np.abs(b.boxes[candidates] - a.boxes[i]).max(axis=1)
        score_gap = np.abs(b.scores[candidates] - a.scores[i])
        best = int(np.argmin(distance + 100 * score_gap))
        j = candidates[best]
        if at_edge and distance[best] > tolerance.box:
            continue
        boxes = max(boxes, float(distance[best]))
        scores = max(scores, float(score_gap[best]))
        if a.masks is not None and b.masks is not None:
            union = np.logical_or(a.masks[i], b.masks[j]).sum()
            masks = max(masks, float((a.masks[i] != b.masks[j]).sum() / max(union, 1)))
    return Differences(boxes, scores, masks, unmatched, len(a))


def compare(reference: list[Detections], candidate: list[Detections], tolerance: Tolerance) -> Differences:
    """Differences between two detectors' results on the same images, matched both ways."""
    total = Differences()
    for a, b in zip(reference, candidate):
        forward, backward = one_way(a, b, tolerance), one_way(b, a, tolerance)
        total = total.merged(forward).merged(attrs.evolve(backward, compared=0))
    return total
