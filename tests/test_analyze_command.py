"""``sdk analyze``, the analysis a training run writes into plots/, and ``sdk info`` with model_complexity."""

from __future__ import annotations

import json

import torch
from conftest import SHARED_DATA, tiny_recipe, write_recipe
from test_cli import assert_user_error, sdk

from detsdk.analysis.complexity import model_complexity

COCO_DIR = SHARED_DATA / "coco-val2014-100"


def coco_recipe(tmp_path):
    return write_recipe(tmp_path / "coco.toml", {
        "model": tiny_recipe(tmp_path)["model"],
        "data": {"test": {"type": "coco", "ann_file": str(COCO_DIR / "instances_val2014_100.json"),
                          "images": str(tmp_path / "no-images-here")}},
        "runtime": {"work_dir": str(tmp_path / "work")},
    })


def test_analyze_results_writes_every_plot_and_its_numbers(tmp_path):
    code, output = sdk("analyze", coco_recipe(tmp_path), "--results",
                       COCO_DIR / "instances_val2014_fakebbox100_results.json", "--out", tmp_path / "analysis")

    assert code == 0, output
    out = tmp_path / "analysis"
    for name in ("confusion_matrix.png", "bbox_pr_curves.png", "bbox_class_ap.png", "bbox_error_breakdown.png"):
        assert (out / name).stat().st_size > 1000, name
    counts = json.loads((out / "confusion_matrix.json").read_text())["counts"]
    assert len(counts) == 81 and sum(map(sum, counts)) > 0
    breakdown = json.loads((out / "bbox_error_breakdown.json").read_text())["overall"]
    assert breakdown["C75"] <= breakdown["C50"] <= breakdown["Loc"] <= breakdown["Oth"] <= breakdown["BG"] <= 1.0
    assert "8 of the 8 worst images not drawn" in output  # the images are not in the shared data


def test_analyze_needs_exactly_one_source(tmp_path):
    assert_user_error(*sdk("analyze", coco_recipe(tmp_path), "--out", tmp_path / "a"), "exactly one of")


def test_a_training_run_writes_the_analysis_of_its_final_evaluation(tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe(tmp_path / "run"))

    code, output = sdk("run", recipe)

    assert code == 0, output
    plots = tmp_path / "run" / "plots"
    assert (plots / "confusion_matrix.png").is_file() and (plots / "bbox_error_breakdown.json").is_file()
    assert json.loads((plots / "confusion_matrix.json").read_text())["labels"][-1] == "background"
    worst = json.loads((plots / "worst_images.json").read_text())
    assert worst and all((plots / entry["file"]).is_file() for entry in worst)  # shapes images, found by image id

    code, output = sdk("analyze", recipe, "--checkpoint", tmp_path / "run" / "last.pt", "--out", tmp_path / "again")
    assert code == 0, output
    assert json.loads((tmp_path / "again" / "confusion_matrix.json").read_text()) == json.loads(
        (plots / "confusion_matrix.json").read_text())  # the same weights, the same evaluation


def test_model_complexity_counts_a_convolution_exactly():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
    model[0].bias.requires_grad_(False)

    complexity = model_complexity(model, (16, 16))

    assert complexity.macs == 8 * 3 * 9 * 16 * 16 and complexity.flops == 2 * complexity.macs
    assert (complexity.parameters, complexity.trainable) == (8 * 3 * 9 + 8, 8 * 3 * 9)
    assert complexity.modules == {"0": 224, "1": 0}


def test_info_prints_parameters_per_module_and_flops(tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", tiny_recipe(tmp_path / "run"))

    code, output = sdk("info", recipe, "--shape", 64, 64)

    assert code == 0, output
    assert "parameters:" in output and "backbone" in output and "input: 1x3x64x64" in output
    flops = float(output.split("FLOPs: ")[1].split(" G")[0])
    macs = float(output.split("multiply-adds: ")[1].split(" G")[0])
    assert flops > 0 and abs(macs - flops / 2) < 0.011
