"""``sdk benchmark``: latency, throughput and memory of a detector under PyTorch eager, ONNX Runtime and OpenVINO.

Both backends run the same work: the exported graph (uint8 batch in; normalise, pad,
detector, post-processing) on the same random images, after the same warm-up, and for
a detector with box-relative masks (Mask R-CNN) the paste into the images in NumPy
that ``load_detector("model.onnx")`` runs after the graph.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import attrs
import numpy as np
import torch
from torch import nn

from detsdk.errors import DetSDKError
from detsdk.export.graph import ExportGraph
from detsdk.export.mask_paste import paste_box_masks
from detsdk.export.pipeline import InferencePipeline

BACKENDS = ("torch", "onnxruntime", "openvino")


@attrs.frozen
class BenchmarkResult:
    """One backend's figures; latencies are per batch, in milliseconds."""

    backend: str
    device: str
    shape: tuple[int, int]
    batch: int
    p50_ms: float
    p90_ms: float
    images_per_s: float
    peak_memory_mb: float | None
    parameters: int | None = None
    flops: int | None = None
    macs: int | None = None


@attrs.frozen
class BenchmarkModel:
    """What is benchmarked: the model (weights loaded, or random for a recipe), its pipeline, an ONNX file if given."""

    model: nn.Module
    pipeline: InferencePipeline
    onnx_path: Path | None
    weights: str


def load_benchmark_model(source: str | Path, num_classes: int = 80) -> BenchmarkModel:
    """A checkpoint, an ``.onnx`` file (its recipe rebuilt with random weights for torch) or a recipe."""
    from detsdk.engine.build import build_model
    from detsdk.engine.predictor import inference_pipeline_spec, load_trained_model

    path = Path(source)
    if path.suffix.lower() == ".onnx":
        import tomllib

        from detsdk.export.runtime import load_onnx_detector

        metadata = load_onnx_detector(path, device="cpu").metadata
        recipe = tomllib.loads(metadata.recipe)
        model = build_model(recipe["model"], len(metadata.classes), for_inference=True)
        return BenchmarkModel(model.eval(), metadata.pipeline, path, "random (torch), the file's (onnxruntime)")
    if path.suffix.lower() in (".pt", ".pth"):
        trained = load_trained_model(path)
        pipeline = InferencePipeline.from_spec(inference_pipeline_spec(trained.recipe))
        return BenchmarkModel(trained.model, pipeline, None, "the checkpoint's")
    from detsdk.recipe.load import load_recipe

    recipe = load_recipe(source).data
    wanted = recipe.get("model", {}).get("num_classes", "auto")
    model = build_model(recipe["model"], wanted if isinstance(wanted, int) else num_classes, for_inference=True)
    pipeline = InferencePipeline.from_spec(inference_pipeline_spec(recipe))
    return BenchmarkModel(model.eval(), pipeline, None, "random (a recipe)")


class PeakMemory:
    """The process's peak resident memory while the block runs (sampled every 5 ms; Linux ``/proc``)."""

    def __enter__(self) -> PeakMemory:
        self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _rss() -> float | None:
        try:
            with open("/proc/self/statm") as file:
                return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            return None

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            rss = self._rss()
            if rss is not None and (self.peak is None or rss > self.peak):
                self.peak = rss


def timed(run, warmup: int, iters: int) -> list[float]:
    """Seconds of each of ``iters`` calls of ``run()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def paste_outputs(outputs, batch: int, shape, mask_paste: str | None) -> None:
    """What ``OnnxDetector`` does after the graph for box-relative masks: paste each image's into it."""
    if mask_paste is None:
        return
    boxes, _, _, index, masks = (np.asarray(o) for o in outputs)
    for i in range(batch):
        keep = index == i
        paste_box_masks(masks[keep], boxes[keep], tuple(shape), tuple(shape), mask_paste)


def probed_graph(model: BenchmarkModel) -> ExportGraph:
    """The export graph of ``model`` on the CPU, with its masks, as ``sdk export`` builds it."""
    example = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return ExportGraph.probed(model.model.cpu(), model.pipeline, example)


def summary(backend: str, device: str, shape, batch: int, times: list[float], peak: float | None, **extra) -> BenchmarkResult:
    """Percentiles and throughput of the timed calls."""
    p50, p90 = np.percentile(np.array(times) * 1000, [50, 90])
    return BenchmarkResult(backend, device, tuple(shape), batch, float(p50), float(p90),
                           batch * len(times) / sum(times), peak, **extra)


def benchmark_torch(model: BenchmarkModel, shape, batch: int, device: str = "cpu", warmup: int = 3,
                    iters: int = 10) -> BenchmarkResult:
    """PyTorch eager on ``device``; with parameters and FLOPs (``detsdk.analysis.complexity``)."""
    from detsdk.analysis.complexity import model_complexity

    graph = probed_graph(model).to(device)
    images = torch.randint(0, 256, (batch, 3, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images = images.to(device)
    complexity = model_complexity(graph, tuple(images.shape), dtype=torch.uint8)
    cuda = images.device.type == "cuda"

    def run():
        with torch.no_grad():
            outputs = graph(images)
        if cuda:
            torch.cuda.synchronize()
        if graph.mask_paste is not None:
            paste_outputs([o.cpu() for o in outputs], batch, shape, graph.mask_paste)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with PeakMemory() as memory:
        times = timed(run, warmup, iters)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else memory.peak
    return summary("torch", device, shape, batch, times, peak, parameters=complexity.parameters,
                   flops=complexity.flops, macs=complexity.macs)


def benchmark_onnxruntime(model: BenchmarkModel, shape, batch: int, device: str = "cpu", warmup: int = 3,
                          iters: int = 10) -> BenchmarkResult:
    """ONNX Runtime with the provider for ``device``; an ONNX file is traced first unless one was given."""
    import onnxruntime

    from detsdk.export.runtime import providers_for

    def session(path: Path):
        return onnxruntime.InferenceSession(str(path), providers=providers_for(device))

    return benchmark_exported("onnxruntime", session, model, shape, batch, device, warmup, iters)


def benchmark_openvino(model: BenchmarkModel, shape, batch: int, device: str = "cpu", warmup: int = 3,
                       iters: int = 10) -> BenchmarkResult:
    """OpenVINO on the CPU, from the ONNX graph as ``sdk export --format openvino`` converts it (float32)."""
    if device != "cpu":
        raise DetSDKError(f"--backend openvino --device {device}: det-sdk runs OpenVINO models on the CPU")
    try:
        import openvino
    except ImportError:
        raise DetSDKError("--backend openvino needs openvino: pip install 'det-sdk[openvino]'") from None
    from detsdk.export.openvino_runtime import OpenVinoSession, compile_for_cpu

    def session(path: Path):
        core = openvino.Core()
        return OpenVinoSession(compile_for_cpu(core, core.read_model(str(path))))

    return benchmark_exported("openvino", session, model, shape, batch, device, warmup, iters)


def benchmark_exported(backend: str, make_session, model: BenchmarkModel, shape, batch: int, device: str,
                       warmup: int, iters: int) -> BenchmarkResult:
    """An exported-graph backend: ``make_session(onnx_path)`` runs it (``session.run(None, feeds)``)."""
    from detsdk.export.exporter import trace_to_onnx

    graph = probed_graph(model)
    with tempfile.TemporaryDirectory() as folder:
        path = model.onnx_path
        if path is None or batch != 1:  # an export's batch is fixed; trace one for this batch
            path = Path(folder) / "benchmark.onnx"
            example = torch.randint(0, 256, (batch, 3, *shape), dtype=torch.uint8)
            with torch.no_grad():
                trace_to_onnx(graph, example, path)
        session = make_session(path)
        name = session.get_inputs()[0].name
        images = np.random.default_rng(0).integers(0, 256, (batch, 3, *shape), dtype=np.uint8)

        def run():
            outputs = session.run(None, {name: images})
            paste_outputs(outputs, batch, shape, graph.mask_paste if len(outputs) > 4 else None)

        with PeakMemory() as memory:
            times = timed(run, warmup, iters)
    return summary(backend, device, shape, batch, times, memory.peak)


def available_backends() -> list[str]:
    """What ``--backend all`` runs: torch, onnxruntime, and openvino where it is installed."""
    import importlib.util

    return [b for b in BACKENDS if b != "openvino" or importlib.util.find_spec("openvino") is not None]


def run_benchmarks(source: str | Path, backends: list[str], shape, batch: int = 1, device: str = "cpu",
                   warmup: int = 3, iters: int = 10, num_classes: int = 80) -> list[BenchmarkResult]:
    """Every requested backend on the same model and input shape, in order."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise DetSDKError(f"--backend {unknown[0]}: expected torch, onnxruntime, openvino or all")
    model = load_benchmark_model(source, num_classes)
    runners = {"torch": benchmark_torch, "onnxruntime": benchmark_onnxruntime, "openvino": benchmark_openvino}
    return [runners[b](model, shape, batch, device, warmup, iters) for b in backends]
