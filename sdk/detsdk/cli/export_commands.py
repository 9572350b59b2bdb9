"""``sdk export`` and ``sdk benchmark``."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import click

from detsdk.cli.options import debug_option
from detsdk.errors import ExportError


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "format_", type=click.Choice(["onnx", "openvino"]), default="onnx", show_default=True,
              help="onnx (a .onnx file) or openvino (an .xml IR and its .bin, made from the ONNX graph).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The file to write.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1),
              help="Images per run (fixed in the graph; height and width are dynamic).")
@click.option("--images", "image_paths", multiple=True, type=click.Path(path_type=Path),
              help="Images (files or folders) for the self-check instead of two synthetic ones.")
@debug_option
def export_command(checkpoint, format_, out, batch, image_paths):
    """Export CHECKPOINT's detector, check it against PyTorch at two new sizes, then write it."""
    from detsdk.detections import image_files, read_image
    from detsdk.export.exporter import export_onnx, export_openvino

    images = [read_image(path) for path in image_files(list(image_paths))] if image_paths else None
    if image_paths and not images:
        raise ExportError(f"--images: no images found in {', '.join(map(str, image_paths))}")
    export = export_openvino if format_ == "openvino" else export_onnx
    report = export(checkpoint, out, batch=batch, images=images)
    sizes = ", ".join(f"{h}x{w}" for h, w in report.checked_sizes)
    runtime = "OpenVINO" if format_ == "openvino" else "onnxruntime"
    click.echo(f"checked with {runtime} at {sizes} against PyTorch: {report.differences.describe()}")
    click.echo(f"wrote {report.path} ({report.metadata.detector}, {len(report.metadata.classes)} classes, "
               f"outputs {', '.join(report.metadata.outputs)})")


@click.command("benchmark")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(["torch", "onnxruntime", "openvino", "all"]), default="all",
              show_default=True, help="all: torch, onnxruntime, and openvino when it is installed.")
@click.option("--shape", nargs=2, type=int, default=(800, 1333), show_default=True, metavar="H W",
              help="Input height and width (the graph pads to the recipe's size_divisor).")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (CUDA execution provider).")
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(min=0))
@click.option("--iters", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--num-classes", default=80, show_default=True, help="Classes for a recipe whose num_classes is auto.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@debug_option
def benchmark_command(model, backend, shape, batch, device, warmup, iters, num_classes, as_json):
    """Latency (p50, p90), images/s, peak memory, parameters and FLOPs of MODEL (checkpoint, .onnx or recipe)."""
    from detsdk.export.benchmark import available_backends, run_benchmarks

    backends = available_backends() if backend == "all" else [backend]
    results = run_benchmarks(model, backends, tuple(shape), batch, device, warmup, iters, num_classes)
    if as_json:
        click.echo(json.dumps([attrs.asdict(r) for r in results], indent=2))
        return
    for result in results:
        click.echo(f"{result.backend} on {result.device}, batch {result.batch} x 3 x {result.shape[0]} x {result.shape[1]}:")
        rows = [("latency p50", f"{result.p50_ms:.1f} ms"), ("latency p90", f"{result.p90_ms:.1f} ms"),
                ("throughput", f"{result.images_per_s:.2f} images/s"),
                ("peak memory", f"{result.peak_memory_mb:.0f} MiB" if result.peak_memory_mb else "n/a")]
        if result.parameters is not None:
            rows += [("parameters", f"{result.parameters / 1e6:.2f} M"), ("FLOPs", f"{result.flops / 1e9:.1f} G"),
                     ("multiply-adds", f"{result.macs / 1e9:.1f} G (MMDetection/fvcore 'FLOPs')")]
        for name, value in rows:
            click.echo(f"  {name:<14} {value}")
    if len(results) > 1 and results[0].backend == "torch":
        for other in results[1:]:
            click.echo(f"{other.backend} / torch latency (p50): {other.p50_ms / results[0].p50_ms:.2f}")


COMMANDS = [export_command, benchmark_command]
