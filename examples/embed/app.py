"""An app that embeds det-sdk: train a detector, then load the checkpoint and detect on an image array.

    python examples/embed/app.py                 # the quickstart recipe, shortened
    python examples/embed/app.py --iters 20 --work-dir runs/embed
"""

from __future__ import annotations

import argparse
from pathlib import Path

import detsdk

RECIPE = Path(__file__).resolve().parents[1] / "quickstart" / "recipe.toml"


def train(work_dir: Path, iters: int) -> Path:
    """Train from the quickstart recipe for ``iters`` iterations; return the best checkpoint."""
    engine = detsdk.Engine.from_recipe(
        RECIPE,
        overrides=[f"train.iters={iters}", "runtime.plot_samples=0", "data.num_workers=0"],
        work_dir=work_dir,
    )
    metrics = engine.fit()
    print(f"trained {engine.iteration} iterations; bbox_mAP = {metrics.get('bbox_mAP', float('nan')):.3f}")
    return work_dir / "best.pt"


def detect(checkpoint: Path) -> None:
    """What an app does at run time: load once, then predict on arrays (H×W×3 uint8 RGB)."""
    import numpy as np

    detector = detsdk.load_detector(checkpoint)
    image = np.full((128, 128, 3), 30, np.uint8)
    image[40:90, 30:80] = (220, 60, 60)  # a red square
    result = detector.predict(image, score_thr=0.3)
    for box, score, name in zip(result.boxes, result.scores, result.class_names):
        print(f"{name:8s} {score:.2f} at {[round(float(v), 1) for v in box]}")
    print(f"{len(result)} detections")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/embed"))
    args = parser.parse_args()
    detect(train(args.work_dir, args.iters))


if __name__ == "__main__":
    main()
