"""Exported detectors on OpenVINO: the IR (``.xml`` + ``.bin``) behind ``OnnxDetector``'s pre- and post-processing.

Free of torch. The metadata is the ONNX export's, kept as ``rt_info`` under ``detsdk``.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np

from detsdk.errors import CheckpointError, DetSDKError
from detsdk.export.metadata import PREFIX, ExportMetadata
from detsdk.export.runtime import OnnxDetector


@attrs.frozen
class Port:
    """An input or output's name, as ``onnxruntime`` reports it."""

    name: str


class OpenVinoSession:
    """A compiled OpenVINO model with the part of ``onnxruntime.InferenceSession``'s API ``OnnxDetector`` uses."""

    def __init__(self, compiled):
        self.compiled = compiled

    def get_inputs(self) -> list[Port]:
        """The model's inputs."""
        return [Port(i.get_any_name()) for i in self.compiled.inputs]

    def get_outputs(self) -> list[Port]:
        """The model's outputs, in order."""
        return [Port(o.get_any_name()) for o in self.compiled.outputs]

    def run(self, _names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output for ``feeds`` (one input), in ``get_outputs`` order."""
        results = self.compiled(list(feeds.values()))
        return [results[output] for output in self.compiled.outputs]


def compile_for_cpu(core, model):
    """The model compiled for the CPU in float32 (OpenVINO would pick bf16 on CPUs that have it)."""
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def load_openvino_detector(path: str | Path, device: str | None = None) -> OnnxDetector:
    """A detector for an ``.xml`` written by ``sdk export --format openvino``; ``device`` cpu (or auto)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"OpenVINO model not found: {path}")
    if (device or "auto").lower() not in ("auto", "cpu"):
        raise DetSDKError(f"device {device}: det-sdk runs OpenVINO models on the CPU; use --device cpu")
    try:
        import openvino
    except ImportError:
        raise DetSDKError(f"{path}: running OpenVINO models needs openvino: pip install 'det-sdk[openvino]'") from None
    core = openvino.Core()
    try:
        model = core.read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: not a readable OpenVINO model ({first_line[:200]})") from None
    props = {}
    for field in attrs.fields(ExportMetadata):
        if model.has_rt_info(["detsdk", field.name]):
            props[PREFIX + field.name] = model.get_rt_info(["detsdk", field.name]).astype(str)
    metadata = ExportMetadata.from_props(props, path)
    return OnnxDetector(OpenVinoSession(compile_for_cpu(core, model)), metadata, path)
