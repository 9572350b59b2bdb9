"""``Detector`` through ONNX Runtime: resize and map back in NumPy/OpenCV, the rest in the graph. Free of torch.

    >>> detector = detsdk.load_detector("model.onnx")      # doctest: +SKIP
    >>> detector.predict("street.jpg").boxes                # original image pixels
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detsdk.detections import PredictsImages
from detsdk.errors import CheckpointError, DetSDKError
from detsdk.export.metadata import ExportMetadata
from detsdk.export.pipeline import to_original


def providers_for(device: str | None) -> list[str]:
    """ONNX Runtime execution providers for ``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    device = (device or "auto").lower()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise DetSDKError(f"device {device}: onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        raise DetSDKError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxDetector(PredictsImages):
    """An exported detector with the same ``predict`` as ``Detector``: a path, an array or a list in.

    Each image is resized as the recipe's pipeline does, run through the graph (which
    normalises, pads and post-processes), and its detections mapped back to the original
    image's pixels. A graph exported for a batch of ``N`` takes ``N`` images of one size;
    images are run one size at a time, the batch filled up by repeating the last image.
    """

    def __init__(self, session, metadata: ExportMetadata, source: str | Path = "model.onnx"):
        self.session = session
        self.metadata = metadata
        self.source = str(source)
        self.classes = list(metadata.classes)
        self.cat_ids = metadata.cat_ids
        self.pipeline = metadata.pipeline
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        self.batch = int(metadata.batch)
        # None: the graph pastes masks itself (files from before box-relative masks)
        self.mask_paste = (metadata.mask_paste or "torchvision") if metadata.mask_format == "box" else None

    def run_graph(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """The graph's detections for images of one size (H×W×3 uint8, already resized), in their pixels."""
        filled = images + [images[-1]] * (-len(images) % self.batch)
        results = []
        for start in range(0, len(filled), self.batch):
            batch = np.ascontiguousarray(np.stack(filled[start : start + self.batch]).transpose(0, 3, 1, 2))
            outputs = dict(zip(self.output_names, self.session.run(None, {self.input_name: batch})))
            index = outputs.pop("batch_index")
            results.extend({k: v[index == i] for k, v in outputs.items()} for i in range(self.batch))
        return results[: len(images)]

    def detect(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Raw detections (numpy ``boxes``, ``scores``, ``labels``, ``masks``) in each RGB image's pixels."""
        resized = [self.pipeline.resize(image) for image in images]
        detections: list[dict | None] = [None] * len(images)
        by_shape: dict[tuple, list[int]] = {}
        for i, (image, _) in enumerate(resized):
            by_shape.setdefault(image.shape, []).append(i)
        for indices in by_shape.values():
            outputs = self.run_graph([resized[i][0] for i in indices])
            for i, output in zip(indices, outputs):
                detections[i] = to_original(output, resized[i][1], images[i].shape[:2],
                                            resized[i][0].shape[:2], self.mask_paste)
        return detections


def load_onnx_detector(path: str | Path, device: str | None = None) -> OnnxDetector:
    """An ``OnnxDetector`` for a file written by ``sdk export``; ``device`` picks the execution provider."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX file not found: {path}")
    try:
        import onnxruntime
    except ImportError:
        raise DetSDKError(f"{path}: running ONNX models needs onnxruntime: pip install 'det-sdk[onnx]'") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers are noise to users
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=providers_for(device))
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: not a readable ONNX model ({first_line[:200]})") from None
    metadata = ExportMetadata.from_props(session.get_modelmeta().custom_metadata_map, path)
    return OnnxDetector(session, metadata, path)
