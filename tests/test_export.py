"""ONNX export: every detector against PyTorch, the torch-free ONNX Runtime detector, sdk export/predict/benchmark."""

from __future__ import annotations

import json
import subprocess
import sys

import attrs
import cv2
import numpy as np
import pytest
import tomli_w
import torch
from conftest import tiny_recipe

from detsdk import load_detector
from detsdk.engine.build import build_model
from detsdk.engine.checkpoint import save_checkpoint
from detsdk.errors import ExportError
from detsdk.export.exporter import export_onnx
from detsdk.export.metadata import ExportMetadata
from detsdk.export.pipeline import InferencePipeline
from detsdk.export.verify import Tolerance, compare

CLASSES = ["circle", "square", "triangle"]
TRACE = (128, 128)
DETECTORS = ("faster_rcnn", "mask_rcnn", "retinanet", "fcos", "rtmdet")


def tiny_model_spec(detector: str) -> dict:
    """A tiny model table of each kind, thresholds at 0 so that even random weights detect."""
    spec = tiny_recipe("unused")["model"]
    spec["box_head"]["score_thresh"] = 0.0
    if detector == "mask_rcnn":
        spec.update(type="mask_rcnn", mask_head={"type": "fcn_mask_head", "num_convs": 1, "conv_channels": 16})
    if detector == "rtmdet":  # the shapes quickstart's RTMDet-tiny, its score threshold at 0
        return {"type": "rtmdet",
                "backbone": {"type": "cspnext", "deepen_factor": 0.167, "widen_factor": 0.375},
                "neck": {"type": "cspnext_pafpn", "out_channels": 32, "num_csp_blocks": 1},
                "head": {"type": "rtmdet_head", "feat_channels": 32, "stacked_convs": 1, "score_thr": 0.0}}
    if detector in ("retinanet", "fcos"):
        head = {"type": "retina_head", "anchor_sizes": [[16], [32], [64], [128], [256]]} if detector == "retinanet" \
            else {"type": "fcos_head", "norm": "none"}
        spec = {"type": detector, "backbone": spec["backbone"],
                "neck": {"type": "fpn", "out_channels": 32, "start_level": 1, "extra": "p6p7"},
                "head": {**head, "score_thresh": 0.0, "num_convs": 1}}
    return spec


# RetinaNet's checkpoint resizes first, so that mapping back to the original pixels is compared too.
RESIZE = {"type": "resize", "scale": [120, 80], "keep_ratio": True}


def write_checkpoint(path, model_spec: dict, version: str = "0.1.0", state=None):
    """A det-sdk checkpoint of a randomly initialised model (seeded)."""
    torch.manual_seed(0)
    recipe = tiny_recipe(path.parent / "run")
    recipe["model"] = model_spec
    if model_spec["type"] == "retinanet":
        recipe["data"]["val"]["pipeline"].insert(0, RESIZE)
    if state is None:
        state = build_model(model_spec, len(CLASSES)).state_dict()
    save_checkpoint(path, {"model": state, "recipe": tomli_w.dumps(recipe), "classes": CLASSES, "version": version})
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each detector as a checkpoint and its ONNX export, with the export's report."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("export")
    made = {}
    for detector in DETECTORS:
        checkpoint = write_checkpoint(folder / f"{detector}.pt", tiny_model_spec(detector))
        report = export_onnx(checkpoint, folder / f"{detector}.onnx", trace_size=TRACE)
        made[detector] = (checkpoint, report)
    return made


def image(height: int, width: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("detector", DETECTORS)
def test_export_matches_pytorch_at_two_sizes_other_than_the_trace_size(exported, detector):
    _, report = exported[detector]
    assert report.path.is_file()
    assert len(report.checked_sizes) == 2 and TRACE not in report.checked_sizes
    assert report.differences.compared > 0
    assert report.differences.within(Tolerance())
    assert not [p for p in report.path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("detector", DETECTORS)
def test_onnx_detector_predicts_like_the_checkpoint_at_new_sizes(exported, detector):
    checkpoint, report = exported[detector]
    torch_detector, onnx_detector = load_detector(checkpoint, device="cpu"), load_detector(report.path)
    for shape in ((70, 90), (100, 52)):
        expected, got = torch_detector.predict(image(*shape)), onnx_detector.predict(image(*shape))
        assert len(got) == len(expected) > 0
        assert compare([expected], [got], Tolerance()).within(Tolerance())
        if detector == "rtmdet":  # untrained, its scores tie: the backends may order equal scores differently
            assert sorted(got.class_names) == sorted(expected.class_names)
        else:
            assert got.class_names == expected.class_names
        if detector == "mask_rcnn":
            assert got.masks.shape == (len(got), *shape) and got.masks.dtype == np.uint8


def test_metadata_round_trips_through_the_file(exported):
    checkpoint, report = exported["mask_rcnn"]
    metadata = load_detector(report.path).metadata
    assert metadata == report.metadata
    assert metadata.classes == CLASSES and metadata.detector == "mask_rcnn"
    assert metadata.pipeline == InferencePipeline(mean=metadata.pipeline.mean, std=metadata.pipeline.std, size_divisor=32)
    assert metadata.outputs == ["boxes", "scores", "labels", "batch_index", "masks"]
    assert "[model]" in metadata.recipe
    assert ExportMetadata.from_props(metadata.to_props(), "x.onnx") == metadata


def test_the_onnx_path_never_imports_torch(exported):
    _, report = exported["fcos"]
    code = (
        "import sys, numpy as np, detsdk\n"
        f"detector = detsdk.load_detector({str(report.path)!r})\n"
        "result = detector.predict(np.zeros((40, 60, 3), np.uint8))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(len(result.boxes), result.boxes.shape[1])\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split()[1] == "4"


def test_a_mismatch_beyond_tolerance_is_an_error_with_the_figures_and_writes_nothing(exported, tmp_path):
    checkpoint, _ = exported["retinanet"]
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="largest box difference .* px, score .*nothing written"):
        export_onnx(checkpoint, out, trace_size=TRACE, tolerance=Tolerance(box=-1.0))
    assert list(tmp_path.iterdir()) == []


def test_a_transform_without_an_onnx_counterpart_names_the_step():
    with pytest.raises(ExportError, match=r"pipeline\[1\]: transform 'photometric_distortion' cannot be exported"):
        InferencePipeline.from_spec([{"type": "normalize"}, {"type": "photometric_distortion"}])


def test_a_checkpoint_of_another_version_that_does_not_fit_is_one_line_naming_both_versions(tmp_path, run_sdk):
    spec = tiny_model_spec("faster_rcnn")
    state = build_model(spec, len(CLASSES)).state_dict()
    state["rpn.head.renamed.weight"] = state.pop("rpn.head.cls_logits.weight")
    checkpoint = write_checkpoint(tmp_path / "old.pt", spec, version="0.0.9", state=state)
    code, _, err = run_sdk("export", checkpoint, "--out", tmp_path / "m.onnx")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "weights do not fit" in err and "written by det-sdk 0.0.9, this is 0.1.0" in err
    assert not (tmp_path / "m.onnx").exists()


def test_an_unknown_detector_is_one_line(tmp_path, run_sdk):
    spec = tiny_model_spec("faster_rcnn")
    checkpoint = write_checkpoint(tmp_path / "x.pt", spec)
    state = torch.load(checkpoint, weights_only=True)
    state["recipe"] = state["recipe"].replace('type = "faster_rcnn"', 'type = "faster_rcnm"')
    torch.save(state, checkpoint)
    code, _, err = run_sdk("export", checkpoint, "--out", tmp_path / "m.onnx")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "unknown detector 'faster_rcnm'" in err and "faster_rcnn" in err


def test_sdk_predict_draws_the_same_boxes_from_the_onnx_file_as_from_the_checkpoint(exported, tmp_path):
    from click.testing import CliRunner

    from detsdk.cli import cli

    checkpoint, report = exported["faster_rcnn"]
    cv2.imwrite(str(tmp_path / "a.png"), image(60, 84))
    outputs = {}
    for name, model in (("torch", checkpoint), ("onnx", report.path)):
        args = ["predict", str(model), str(tmp_path / "a.png"), "--out", str(tmp_path / name), "--score-thr", "0",
                "--device", "cpu"]
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        outputs[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert len(outputs["onnx"]) == len(outputs["torch"]) > 0
    for a, b in zip(outputs["torch"], outputs["onnx"]):
        assert a["category_id"] == b["category_id"]
        assert np.allclose(a["bbox"], b["bbox"], atol=0.05) and abs(a["score"] - b["score"]) < 1e-3
    drawn = [cv2.imread(str(tmp_path / name / "a.png")).astype(int) for name in ("torch", "onnx")]
    assert np.abs(drawn[0] - drawn[1]).mean() < 1.0


def test_sdk_benchmark_prints_every_backend_as_json(exported, run_sdk):
    _, report = exported["fcos"]
    code, out, err = run_sdk("benchmark", report.path, "--shape", "64", "96", "--warmup", "0", "--iters", "1", "--json")
    assert code == 0, err
    results = json.loads(out)
    assert [r["backend"] for r in results] == ["torch", "onnxruntime", "openvino"]  # openvino: in the dev extra
    assert all(r["p50_ms"] > 0 and r["images_per_s"] > 0 for r in results)
    assert results[0]["macs"] * 2 == results[0]["flops"] > 0 and results[0]["parameters"] > 0


def test_sdk_benchmark_runs_one_backend_of_a_mask_detector_alone(exported, run_sdk):
    checkpoint, _ = exported["mask_rcnn"]
    code, out, err = run_sdk("benchmark", checkpoint, "--backend", "onnxruntime", "--shape", "64", "96",
                             "--warmup", "0", "--iters", "1")
    assert code == 0, err
    assert "onnxruntime on cpu, batch 1 x 3 x 64 x 96" in out and "torch" not in out


def test_benchmark_paste_step_is_the_runtimes(exported, monkeypatch):
    from detsdk.export import benchmark

    pasted = []
    monkeypatch.setattr(benchmark, "paste_box_masks", lambda masks, boxes, *args: pasted.append((masks.shape, args)))
    checkpoint, _ = exported["mask_rcnn"]
    model = benchmark.load_benchmark_model(checkpoint)
    for run in (benchmark.benchmark_torch, benchmark.benchmark_onnxruntime):
        run(model, (64, 96), 1, warmup=0, iters=1)
    assert len(pasted) == 2 and all(shape[1:] == (28, 28) and args == ((64, 96), (64, 96), "torchvision")
                                    for shape, args in pasted)


def test_complexity_counts_a_convolution_as_its_multiply_adds():
    from detsdk.analysis.complexity import model_complexity

    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    complexity = model_complexity(conv, (1, 3, 10, 10))
    assert complexity.parameters == 8 * 3 * 9
    assert complexity.macs == 8 * 3 * 9 * 100 and complexity.flops == 2 * complexity.macs


def test_a_detector_whose_trace_freezes_values_fails_naming_the_file_and_line(tmp_path, monkeypatch):
    from detsdk.builtin.models.mask_head import FCNMaskHead

    def box_masks_in_a_python_loop(self, mask_logits, labels):
        index = [int(label) for label in torch.cat(labels).tolist()]  # what a trace cannot follow
        return [mask_logits[torch.arange(len(index)), index].sigmoid()]

    monkeypatch.setattr(FCNMaskHead, "box_masks", box_masks_in_a_python_loop)
    checkpoint = write_checkpoint(tmp_path / "loop.pt", tiny_model_spec("mask_rcnn"))
    with pytest.raises(ExportError, match=r"test_export\.py:\d+: Converting a tensor to a Python list.*nothing written"):
        export_onnx(checkpoint, tmp_path / "m.onnx", trace_size=TRACE)
    assert not (tmp_path / "m.onnx").exists()


def test_mask_rcnn_graphs_return_box_relative_masks_that_the_runtime_pastes(exported):
    _, report = exported["mask_rcnn"]
    assert (report.metadata.mask_format, report.metadata.mask_paste) == ("box", "torchvision")
    detector = load_detector(report.path)
    outputs = detector.run_graph([image(64, 96)])[0]
    assert outputs["masks"].shape == (len(outputs["boxes"]), 28, 28) and len(outputs["boxes"]) > 0


def test_mmdetection_style_mask_paste_exports_too(tmp_path):
    spec = tiny_model_spec("mask_rcnn")
    spec["mask_head"]["paste"] = "mmdet"  # a Python loop over boxes in PyTorch; pasted on the host once exported
    checkpoint = write_checkpoint(tmp_path / "mmdet_paste.pt", spec)
    report = export_onnx(checkpoint, tmp_path / "m.onnx", trace_size=TRACE)
    assert report.metadata.mask_paste == "mmdet" and report.differences.within(Tolerance())
    expected = load_detector(checkpoint, device="cpu").predict(image(70, 90))
    got = load_detector(report.path).predict(image(70, 90))
    assert compare([expected], [got], Tolerance()).within(Tolerance()) and got.masks.any()


def test_a_graph_that_pastes_its_own_masks_still_runs(exported, tmp_path):
    """Files exported before box-relative masks (``mask_format`` absent) carry H x W masks."""
    from detsdk.export.exporter import trace_to_onnx
    from detsdk.export.graph import ExportGraph
    from detsdk.export.runtime import load_onnx_detector

    checkpoint, report = exported["mask_rcnn"]
    torch_detector = load_detector(checkpoint, device="cpu")

    class PastesItself(torch.nn.Module):  # no export_detections: the generic path, pasted masks
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, images, image_sizes):
            return self.model(images, image_sizes=image_sizes)

    graph = ExportGraph.probed(PastesItself(torch_detector.model), report.metadata.pipeline,
                               torch.zeros((1, 3, *TRACE), dtype=torch.uint8))
    assert graph.with_masks and graph.mask_format == "image" and graph.mask_paste is None
    with torch.no_grad():
        trace_to_onnx(graph, torch.zeros((1, 3, *TRACE), dtype=torch.uint8), tmp_path / "old.onnx")
    import onnx

    proto = onnx.load(str(tmp_path / "old.onnx"))
    old = attrs.evolve(report.metadata, mask_format=None, mask_paste=None)
    for key, value in old.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(tmp_path / "old.onnx"))
    detector = load_onnx_detector(tmp_path / "old.onnx")
    assert detector.mask_paste is None
    expected, got = torch_detector.predict(image(70, 90)), detector.predict(image(70, 90))
    assert compare([expected], [got], Tolerance()).within(Tolerance()) and got.masks.shape[1:] == (70, 90)


def test_a_graph_exported_for_a_batch_of_two_predicts_any_number_of_images(exported, tmp_path):
    checkpoint, _ = exported["faster_rcnn"]
    report = export_onnx(checkpoint, tmp_path / "batch2.onnx", batch=2, trace_size=TRACE)
    assert report.metadata.batch == 2
    images = [image(64, 80, seed) for seed in range(3)]
    expected = [load_detector(checkpoint, device="cpu").predict(i) for i in images]
    assert compare(expected, load_detector(report.path).predict(images), Tolerance()).within(Tolerance())


def test_openvino_export_is_checked_and_predicts_like_the_checkpoint(exported, tmp_path):
    from detsdk.export.exporter import export_openvino

    checkpoint, _ = exported["mask_rcnn"]
    report = export_openvino(checkpoint, tmp_path / "model.xml", trace_size=TRACE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]
    assert report.differences.within(Tolerance()) and report.differences.compared > 0
    detector = load_detector(tmp_path / "model.xml")
    assert detector.metadata == report.metadata
    expected = load_detector(checkpoint, device="cpu").predict(image(72, 96))
    got = detector.predict(image(72, 96))
    assert compare([expected], [got], Tolerance()).within(Tolerance())
    assert got.masks.shape == (len(got), 72, 96)
