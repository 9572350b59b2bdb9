"""``sdk export``: trace a checkpoint's detector to ONNX, check it against PyTorch, then write it.

The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) is used: the
dynamo exporter cannot export torchvision's detection post-processing (see docs/export.md).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

import attrs
import numpy as np
import torch
from torch import nn

from detsdk.errors import ExportError
from detsdk.export.graph import BOX_OUTPUTS, MASK_OUTPUT, ExportGraph
from detsdk.export.metadata import ExportMetadata
from detsdk.export.pipeline import InferencePipeline
from detsdk.export.verify import Differences, Tolerance, compare, sample_images

OPSET = 17
TRACE_SIZE = (256, 256)


@attrs.frozen
class ExportReport:
    """What ``export_onnx`` wrote and how close ONNX Runtime came to PyTorch on the sample images."""

    path: Path
    differences: Differences
    checked_sizes: list[tuple[int, int]]
    metadata: ExportMetadata


@contextlib.contextmanager
def module_stack(model: nn.Module):
    """Record which submodules are running, so a failure can name the innermost one (``stack[-1]``)."""
    stack: list[str] = []
    names = {module: name or "model" for name, module in model.named_modules()}

    def entered(label: str):
        return lambda *_: stack.append(label)  # None: the module's input is left alone

    def left(*_):
        del stack[-1:]  # returns None: the module's output is left alone

    handles = []
    for module, name in names.items():
        handles.append(module.register_forward_pre_hook(entered(f"{name} ({type(module).__name__})")))
        handles.append(module.register_forward_hook(left))
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


def trace_to_onnx(graph: ExportGraph, example: torch.Tensor, path: Path, opset: int = OPSET) -> list[str]:
    """Export ``graph`` with dynamic height and width; returns tracer warnings, each naming its module.

    A failure is an ``ExportError`` naming the innermost module that was running.
    """
    outputs = list(BOX_OUTPUTS) + [MASK_OUTPUT] * graph.with_masks
    dynamic = {"images": {2: "height", 3: "width"}, **{name: {0: "detections"} for name in outputs}}
    if graph.with_masks and graph.mask_format == "image":
        dynamic[MASK_OUTPUT] = {0: "detections", 1: "height", 2: "width"}
    noted: list[str] = []
    with module_stack(graph.detector) as stack, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        try:
            torch.onnx.export(graph, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=["images"], output_names=outputs, dynamic_axes=dynamic)
        except Exception as exc:  # the exporter raises many types; the user needs the module and the reason
            where = stack[-1] if stack else "the detector"
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"{where} stops the ONNX export: {type(exc).__name__}: {first_line[:300]}") from None
    for warning in caught:  # where each frozen value came from: the file and line name the module
        if issubclass(warning.category, torch.jit.TracerWarning) and "Python" in str(warning.message):
            message = str(warning.message).split(" might cause")[0]
            noted.append(f"{Path(warning.filename).name}:{warning.lineno}: {message}")
    return noted


def pytorch_reference(trained, spec: list[dict]):
    """The checkpoint's PyTorch ``Detector`` on the CPU, without TTA: what an export must match."""
    from detsdk.engine.predictor import Detector
    from detsdk.plugins.build import build_component

    transforms = [build_component("transform", step, where=f"pipeline[{i}]") for i, step in enumerate(spec)]
    return Detector(trained.model.float().eval(), transforms, trained.classes, torch.device("cpu"))


def check_against_pytorch(out: Path, runtime: str, reference, candidate, samples: list[np.ndarray],
                          tolerance: Tolerance, hint: str = "") -> Differences:
    """Both detectors on each sample image; an ``ExportError`` with the figures beyond ``tolerance``."""
    # One image at a time on both sides: PyTorch would pad a list into one batch, which moves borders.
    expected = [reference.predict(image) for image in samples]
    try:
        got = [candidate.predict(image) for image in samples]
    except Exception as exc:  # the runtime's own error types: a graph that only runs at the trace size
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{out}: {runtime} cannot run the traced graph at another size ({first_line[:300]})"
                          f"{hint}; nothing written") from None
    differences = compare(expected, got, tolerance)
    if not differences.within(tolerance):
        raise ExportError(
            f"{out}: {runtime} differs from PyTorch beyond tolerance (box {tolerance.box} px, score "
            f"{tolerance.score}, mask {tolerance.mask}): {differences.describe()}{hint}; nothing written"
        )
    return differences


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    batch: int = 1,
    trace_size: tuple[int, int] = TRACE_SIZE,
    images: list[np.ndarray] | None = None,
    tolerance: Tolerance = Tolerance(),
    opset: int = OPSET,
) -> ExportReport:
    """Export a checkpoint to ``out`` (ONNX), after checking it against PyTorch on sample images.

    ``images`` (H×W×3 uint8 RGB) default to two synthetic images whose sizes differ from
    ``trace_size`` and from each other. Both sides run the recipe's inference pipeline and
    report in original pixels; a difference beyond ``tolerance`` is an ``ExportError`` with
    the figures, and ``out`` is then left as it was (the file is written to a temp name first).
    """
    from detsdk import __version__
    from detsdk.engine.predictor import inference_pipeline_spec, load_trained_model
    from detsdk.export.runtime import OnnxDetector
    from detsdk.recipe.load import dump_recipe

    import onnx
    import onnxruntime

    out = Path(out)
    trained = load_trained_model(checkpoint)
    spec = inference_pipeline_spec(trained.recipe)
    pipeline = InferencePipeline.from_spec(spec, where=f"{checkpoint}: the recipe's test pipeline")
    model = trained.model.float().eval()
    example = torch.randint(0, 256, (batch, 3, *trace_size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    graph = ExportGraph.probed(model, pipeline, example[:1])
    metadata = ExportMetadata(
        classes=trained.classes, pipeline=pipeline, detector=str(trained.recipe["model"].get("type")),
        detsdk_version=__version__, recipe=dump_recipe(trained.recipe), cat_ids=trained.cat_ids,
        checkpoint_version=trained.version, batch=batch,
        outputs=list(BOX_OUTPUTS) + [MASK_OUTPUT] * graph.with_masks,
        mask_format=graph.mask_format if graph.with_masks else None, mask_paste=graph.mask_paste,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        with torch.no_grad():
            frozen = trace_to_onnx(graph, example, temp, opset)
        proto = onnx.load(str(temp))
        for key, value in metadata.to_props().items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(temp))
        session = onnxruntime.InferenceSession(str(temp), providers=["CPUExecutionProvider"])
        reference = pytorch_reference(trained, spec)
        samples = images if images is not None else sample_images()
        hint = f"; the trace froze values at {'; '.join(sorted(set(frozen)))[:600]}" if frozen else ""
        candidate = OnnxDetector(session, metadata, out)
        differences = check_against_pytorch(out, "ONNX Runtime", reference, candidate, samples, tolerance, hint)
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
    sizes = [tuple(candidate.pipeline.resize(image)[0].shape[:2]) for image in samples]
    return ExportReport(out, differences, sizes, metadata)


def export_openvino(checkpoint: str | Path, out: str | Path, batch: int = 1, trace_size: tuple[int, int] = TRACE_SIZE,
                    images: list[np.ndarray] | None = None, tolerance: Tolerance = Tolerance(),
                    opset: int = OPSET) -> ExportReport:
    """Export to OpenVINO IR (``out`` ``.xml`` and its ``.bin``) from the self-checked ONNX graph, checked again.

    The ONNX file is made and checked as ``export_onnx`` does (in a temp folder), converted
    by ``openvino.convert_model`` (float32 weights), the metadata stored as ``rt_info``
    under ``detsdk``, and the result compared with PyTorch the same way before both files
    are renamed into place.
    """
    import openvino

    from detsdk.engine.predictor import inference_pipeline_spec, load_trained_model
    from detsdk.export.metadata import PREFIX
    from detsdk.export.openvino_runtime import OpenVinoSession, compile_for_cpu
    from detsdk.export.runtime import OnnxDetector

    out = Path(out)
    if out.suffix != ".xml":
        raise ExportError(f"--out {out}: an OpenVINO model is an .xml file (with its .bin beside it)")
    with tempfile.TemporaryDirectory() as folder:
        onnx_report = export_onnx(checkpoint, Path(folder) / "model.onnx", batch, trace_size, images, tolerance, opset)
        model = openvino.convert_model(str(onnx_report.path))
    metadata = onnx_report.metadata
    for key, value in metadata.to_props().items():
        model.set_rt_info(value, ["detsdk", key.removeprefix(PREFIX)])
    out.parent.mkdir(parents=True, exist_ok=True)
    temp_xml = out.parent / f".{out.stem}.{os.getpid()}.tmp.xml"
    temp_bin = temp_xml.with_suffix(".bin")
    try:
        openvino.save_model(model, str(temp_xml), compress_to_fp16=False)
        core = openvino.Core()
        session = OpenVinoSession(compile_for_cpu(core, core.read_model(str(temp_xml))))
        trained = load_trained_model(checkpoint)
        reference = pytorch_reference(trained, inference_pipeline_spec(trained.recipe))
        samples = images if images is not None else sample_images()
        candidate = OnnxDetector(session, metadata, out)
        differences = check_against_pytorch(out, "OpenVINO", reference, candidate, samples, tolerance)
        os.replace(temp_bin, out.with_suffix(".bin"))
        os.replace(temp_xml, out)
    finally:
        temp_xml.unlink(missing_ok=True)
        temp_bin.unlink(missing_ok=True)
    return ExportReport(out, differences, onnx_report.checked_sizes, metadata)
