"""``plots/``: loss and metric curves, and a grid of sample predictions."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# Drawing lives with the data (``sdk data browse`` uses it too); the name stays importable from here.
from detsdk.data.draw import PALETTE, draw_detections  # noqa: F401


def plot_curves(records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Draw ``loss.png`` (every loss term per iteration) and ``metrics.png`` (each metric per evaluation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    train = [r for r in records if r.get("mode") == "train"]
    evals = [r for r in records if r.get("mode") == "val"]
    for name, rows, keys in (
        ("loss.png", train, lambda r: [k for k in r if k.startswith("loss")]),
        ("metrics.png", evals, lambda r: [k for k in r if k.endswith("mAP") or k.endswith("mAP_50")]),
    ):
        if not rows:
            continue
        series = defaultdict(list)
        for row in rows:
            for key in keys(row):
                series[key].append((row["iter"], row[key]))
        figure, axes = plt.subplots(figsize=(7, 4))
        for key, points in sorted(series.items()):
            xs, ys = zip(*points)
            axes.plot(xs, ys, label=key, marker="o" if name == "metrics.png" else None)
        axes.set_xlabel("iteration")
        axes.set_title(name[:-4])
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(out_dir / name, dpi=100)
        plt.close(figure)
        written.append(out_dir / name)
    return written


def save_grid(images: list[np.ndarray], path: Path, columns: int = 4) -> Path:
    """Tile RGB images (resized to the first one's size) into one PNG."""
    height, width = images[0].shape[:2]
    tiles = [cv2.resize(im, (width, height)) for im in images]
    while len(tiles) % columns and len(tiles) > columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return path
