"""A synthetic dataset of circles, squares and triangles, written once as COCO files.

The quickstart's dataset: it needs no download, builds in seconds, and a
small detector learns it on a CPU in minutes. The files land in a cache
folder keyed by every parameter, so they are generated once and reused.

    >>> train = ShapesDataset(split="train")          # doctest: +SKIP
    >>> len(train), train.classes
    (400, ['circle', 'square', 'triangle'])
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from detsdk.builtin.data.coco import CocoDataset
from detsdk.errors import DataError, RecipeError, suggest

CLASSES = ["circle", "square", "triangle"]
DEFAULT_NUM_IMAGES = {"train": 400, "val": 100, "test": 100}
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}  # part of each image's seed: splits never share images
GENERATOR_VERSION = 1  # bump when the drawing changes, so old caches are not reused
ANNOTATION_FILE = "annotations.json"
IMAGE_FOLDER = "images"
MAX_OVERLAP = 0.15  # of the smaller box: objects may touch, never hide each other


class ShapesDataset(CocoDataset):
    """Synthetic shapes on a noisy background, generated once and read back as COCO.

    Objects are solid, saturated colours on a dark, desaturated, textured
    background; their sizes run from 1/8 to 1/2 of ``image_size`` (16 to 64
    pixels at 128), they overlap by at most 15% of the smaller box, and each
    box is the exact bounding box of the object's visible pixels. Same
    parameters, same files; ``train``, ``val`` and ``test`` never share an image.

    Args:
        split: ``train``, ``val`` or ``test``.
        num_images: how many images; 0 takes the split's default (train 400, val 100, test 100).
        image_size: width and height of the square images, in pixels.
        max_objects: at most this many objects an image (at least one).
        seed: base seed; each image's seed derives from it, the split and the image index.
        cache_dir: where the files go; "" uses ``$DETSDK_CACHE/shapes``, else ``~/.cache/detsdk/shapes``.
        with_masks: also return instance masks (decoded from the polygons).
    """

    def __init__(
        self,
        split: str = "train",
        num_images: int = 0,
        image_size: int = 128,
        max_objects: int = 4,
        seed: int = 0,
        cache_dir: str = "",
        with_masks: bool = False,
    ):
        _check_parameters(split, num_images, image_size, max_objects, seed)
        self.split = split
        num_images = num_images or DEFAULT_NUM_IMAGES[split]
        self.root = ensure_shapes_files(split, num_images, image_size, max_objects, seed, cache_dir)
        super().__init__(
            ann_file=str(self.root / ANNOTATION_FILE), images=str(self.root / IMAGE_FOLDER), with_masks=with_masks
        )

    def __repr__(self) -> str:
        return f"ShapesDataset(split={self.split!r}, images={len(self)}, root={str(self.root)!r})"


def default_cache_dir() -> Path:
    """``$DETSDK_CACHE/shapes`` when that variable is set, else ``~/.cache/detsdk/shapes``."""
    root = os.environ.get("DETSDK_CACHE")
    return Path(root).expanduser() / "shapes" if root else Path.home() / ".cache" / "detsdk" / "shapes"


def ensure_shapes_files(
    split: str, num_images: int, image_size: int, max_objects: int, seed: int, cache_dir: str = ""
) -> Path:
    """The folder holding this parameter set's files, generating them first if absent.

    Files are written to a temporary folder that is then renamed into place, so
    an interrupted run never leaves a half-written cache, and concurrent
    processes (one per GPU) all end up reading the same complete folder.
    """
    base = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    key = f"{split}-n{num_images}-size{image_size}-obj{max_objects}-seed{seed}-v{GENERATOR_VERSION}"
    root = base / key
    if (root / ANNOTATION_FILE).is_file():
        return root
    if root.exists():
        raise DataError(f"{root} exists but holds no {ANNOTATION_FILE}; it is not a shapes cache, remove it")
    try:
        base.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=base))
    except OSError as exc:
        raise DataError(f"cannot create the shapes cache under {base}: {exc} (set cache_dir or $DETSDK_CACHE)") from exc
    try:
        write_shapes_coco(temporary, split, num_images, image_size, max_objects, seed)
        os.replace(temporary, root)
    except OSError:
        if not (root / ANNOTATION_FILE).is_file():  # not another process winning the race
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return root


def write_shapes_coco(
    folder: Path, split: str, num_images: int, image_size: int, max_objects: int, seed: int
) -> None:
    """Draw ``num_images`` images into ``folder/images`` and write ``folder/annotations.json``."""
    (folder / IMAGE_FOLDER).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        # One stream per image: the first k images do not depend on num_images.
        rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index, GENERATOR_VERSION]))
        image, objects = draw_shapes_image(rng, image_size, max_objects)
        file_name = f"{index:06d}.png"
        if not cv2.imwrite(str(folder / IMAGE_FOLDER / file_name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise DataError(f"cannot write {folder / IMAGE_FOLDER / file_name}")
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "height": image_size, "width": image_size})
        for label, mask in objects:
            annotations.append(_annotation(len(annotations) + 1, image_id, label, mask))
    coco = {
        "info": {
            "description": "det-sdk synthetic shapes",
            "split": split,
            "seed": seed,
            "generator_version": GENERATOR_VERSION,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)],
    }
    with open(folder / ANNOTATION_FILE, "w", encoding="utf-8") as f:
        json.dump(coco, f, separators=(",", ":"))


def draw_shapes_image(
    rng: np.random.Generator, image_size: int, max_objects: int
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One RGB image and its objects as ``(label, visible mask)`` pairs, in drawing order."""
    scale = image_size / 128
    min_size, max_size = 16 * scale, 64 * scale
    # Object index map: 0 is background, k is the k-th object; drawn in order, later ones on top.
    index_map = np.zeros((image_size, image_size), dtype=np.uint8)
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    wanted = int(rng.integers(1, max_objects + 1))
    for _ in range(wanted * 10):  # rejection sampling; an image may end with fewer objects
        if len(labels) == wanted:
            break
        label = int(rng.integers(len(CLASSES)))
        size = float(rng.uniform(min_size, max_size))
        points = _shape_polygon(rng, label, size, image_size)
        box = (points[:, 0].min(), points[:, 1].min(), points[:, 0].max() + 1, points[:, 1].max() + 1)
        if any(_overlap(box, other) > MAX_OVERLAP for other in boxes):
            continue
        cv2.fillPoly(index_map, [points], len(labels) + 1)
        boxes.append(box)
        labels.append(label)
    colours = _object_colours(rng, len(labels))
    palette = np.concatenate([np.zeros((1, 3), np.uint8), colours])
    image = np.where(index_map[..., None] > 0, palette[index_map], _background(rng, image_size))
    objects = [(label, (index_map == k + 1).astype(np.uint8)) for k, label in enumerate(labels)]
    return image.astype(np.uint8), [(label, mask) for label, mask in objects if mask.any()]


def _shape_polygon(rng: np.random.Generator, label: int, size: float, image_size: int) -> np.ndarray:
    """Integer vertices of a circle, square or triangle about ``size`` wide, fully inside the image."""
    if CLASSES[label] == "circle":
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        unit = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 0.5
    elif CLASSES[label] == "square":
        unit = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    else:
        # A triangle pointing a random way; its circumradius makes it look as big as the others.
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.array([0, 2, 4]) * np.pi / 3
        unit = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 0.6
    points = unit * size
    low, high = points.min(axis=0), points.max(axis=0)
    centre = rng.uniform(-low, image_size - 1 - high)
    return np.round(points + centre).astype(np.int32)


def _overlap(a: tuple, b: tuple) -> float:
    """Intersection over the area of the smaller box."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return width * height / smaller


def _object_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """Bright, saturated RGB colours, so that objects stand out of the background."""
    hsv = np.stack(
        [rng.integers(0, 180, count), rng.integers(150, 256, count), rng.integers(170, 256, count)], axis=1
    ).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def _background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A dark, low-saturation texture: smooth blotches plus per-pixel noise."""
    blotches = rng.uniform(30, 120, size=(6, 6, 1)) + rng.uniform(-12, 12, size=(6, 6, 3))
    smooth = cv2.resize(blotches.astype(np.float32), (image_size, image_size), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 8, size=(image_size, image_size, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def _annotation(annotation_id: int, image_id: int, label: int, mask: np.ndarray) -> dict:
    """A COCO annotation whose box is the bounding box of the mask's pixels."""
    ys, xs = np.nonzero(mask)
    x1, y1 = int(xs.min()), int(ys.min())
    width, height = int(xs.max()) - x1 + 1, int(ys.max()) - y1 + 1
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    segmentation = [_pixel_edge_polygon(c.reshape(-1, 2)) for c in contours if len(c) >= 3]
    if not segmentation:  # a sliver: its box is its outline
        segmentation = [[x1, y1, x1 + width, y1, x1 + width, y1 + height, x1, y1 + height]]
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": label + 1,
        "bbox": [float(x1), float(y1), float(width), float(height)],
        "area": float(mask.sum()),
        "segmentation": segmentation,
        "iscrowd": 0,
    }


def _pixel_edge_polygon(centres: np.ndarray) -> list[float]:
    """A contour through boundary pixel centres, moved out to the pixels' outer edges, flattened.

    COCO polygons are in continuous coordinates (pixel ``i`` spans ``[i, i+1]``), so a
    polygon through pixel centres would lose half a pixel all round when decoded.
    """
    points = centres.astype(np.float64)
    x, y = points[:, 0], points[:, 1]
    orientation = np.sign(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) or 1.0
    tangent = np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)
    outward = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1) * orientation
    return (points + 0.5 + 0.5 * np.sign(outward)).reshape(-1).tolist()


def _check_parameters(split: str, num_images: int, image_size: int, max_objects: int, seed: int) -> None:
    if split not in SPLIT_CODES:
        raise RecipeError(
            f"shapes: split = {split!r}: expected one of {', '.join(SPLIT_CODES)}{suggest(split, SPLIT_CODES)}"
        )
    checks = [
        ("num_images", num_images, 0, "an integer >= 0 (0: the split's default)"),
        ("image_size", image_size, 32, "an integer >= 32"),
        ("max_objects", max_objects, 1, "an integer >= 1"),
        ("seed", seed, 0, "an integer >= 0"),
    ]
    for name, value, minimum, expected in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise RecipeError(f"shapes: {name} = {value!r}: expected {expected}")
