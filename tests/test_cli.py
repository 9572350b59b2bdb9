"""The ``sdk`` command line: bad input exits 2 with one line naming the culprit, good input works."""

from __future__ import annotations

import json
import pytest
import torch
from click.testing import CliRunner
from conftest import SHARED_DATA, tiny_recipe, write_recipe

from detsdk.cli import cli

COCO_DIR = SHARED_DATA / "coco-val2014-100"


def sdk(*args):
    """Invoke the CLI in-process; returns (exit code, output with stderr)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def assert_user_error(code, output, *needles):
    assert code == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def recipe_file(tmp_path):
    return write_recipe(tmp_path / "recipe.toml", tiny_recipe(tmp_path / "run"))


def test_missing_recipe(tmp_path):
    assert_user_error(*sdk("run", tmp_path / "nope.toml"), "recipe not found", "nope.toml")


def test_malformed_toml_names_its_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = \n")
    assert_user_error(*sdk("run", bad), "bad.toml", "invalid TOML", "line 2")


def test_python_file_as_recipe(tmp_path):
    config = tmp_path / "faster_rcnn.py"
    config.write_text("model = dict(type='FasterRCNN')\n")
    assert_user_error(*sdk("run", config), "faster_rcnn.py", "recipes are TOML")


def test_unknown_component_with_nearest_name_and_key_path(recipe_file):
    assert_user_error(*sdk("run", recipe_file, "--set", "model.neck.type='fnp'"),
                      "model.neck.type", "unknown neck 'fnp'", "did you mean 'fpn'")


def test_unknown_parameter_with_nearest_name(recipe_file):
    assert_user_error(*sdk("run", recipe_file, "--set", "model.backbone.frozen_stage=1"),
                      "unknown parameter 'frozen_stage'", "did you mean 'frozen_stages'")


def test_missing_base(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('base = ["../_base/models/none.toml"]\n')
    assert_user_error(*sdk("recipe", "show", recipe), "base recipe not found", "none.toml")


def test_circular_inheritance(tmp_path):
    (tmp_path / "a.toml").write_text('base = ["b.toml"]\n')
    (tmp_path / "b.toml").write_text('base = ["a.toml"]\n')
    assert_user_error(*sdk("run", tmp_path / "a.toml"), "circular inheritance")


def test_bad_set_key(recipe_file):
    assert_user_error(*sdk("run", recipe_file, "--set", "train.epocs=3"), "train.epocs", "did you mean 'epochs'")


def test_num_classes_disagreeing_with_the_dataset(recipe_file):
    assert_user_error(*sdk("run", recipe_file, "--set", "model.num_classes=7"),
                      "model.num_classes = 7", "3 classes", "--set model.num_classes=7")


def test_missing_annotation_file(tmp_path):
    recipe = tiny_recipe(tmp_path / "run")
    recipe["data"]["train"] = {"type": "coco", "ann_file": str(tmp_path / "missing.json"), "images": str(tmp_path)}
    assert_user_error(*sdk("run", write_recipe(tmp_path / "r.toml", recipe)), "missing.json")


def test_an_image_that_does_not_decode_is_named(tmp_path, recipe_file):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    engine_run = tmp_path / "run"
    code, _ = sdk("run", recipe_file, "--set", "train.iters=1", "--set", "runtime.plot_samples=0")
    assert code == 0
    assert_user_error(*sdk("predict", engine_run / "last.pt", broken, "--out", tmp_path / "out"),
                      "broken.jpg", "cannot decode")


def test_a_checkpoint_whose_unpickling_runs_code_is_refused(tmp_path, recipe_file):
    marker = tmp_path / "code-ran"

    class Exploit:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Exploit()}, evil)
    for args in (("eval", recipe_file, "--checkpoint", evil), ("predict", evil, tmp_path, "--out", tmp_path / "o")):
        assert_user_error(*sdk(*args), "evil.pt", "refused")
    assert_user_error(*sdk("run", recipe_file, "--set", f"runtime.load_from='{evil}'"), "evil.pt", "refused")
    assert not marker.exists()


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(cli, ["--debug", "run", str(tmp_path / "nope.toml")])
    assert result.exit_code != 2 and result.exception is not None


def test_recipe_show_prints_the_resolved_recipe(recipe_file):
    code, output = sdk("recipe", "show", recipe_file, "--set", "train.iters=9")
    import tomllib

    shown = tomllib.loads(output)
    assert code == 0 and shown["train"]["iters"] == 9 and shown["runtime"]["seed"] == 0


def test_eval_results_evaluates_what_the_file_holds_and_matches_pycocotools(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = ["mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l"]
    for kind, results, expected_types in (("box", "instances_val2014_fakebbox100_results.json", ["bbox"]),
                                          ("mask", "instances_val2014_fakesegm100_results.json", ["bbox", "segm"])):
        recipe = {
            "model": tiny_recipe(tmp_path)["model"],
            "data": {"test": {"type": "coco", "ann_file": str(COCO_DIR / "instances_val2014_100.json"),
                              "images": str(tmp_path / "no-images-here")}},
            "runtime": {"work_dir": str(tmp_path / kind)},
        }
        code, output = sdk("eval", write_recipe(tmp_path / f"{kind}.toml", recipe), "--results", COCO_DIR / results)
        assert code == 0, output
        assert f"evaluating {' and '.join(expected_types)}" in output
        written = json.loads((tmp_path / kind / "metrics.json").read_text())
        assert sorted({key.split("_")[0] for key in written}) == expected_types

        for iou_type in expected_types:
            ground_truth = COCO(str(COCO_DIR / "instances_val2014_100.json"))
            evaluator = COCOeval(ground_truth, ground_truth.loadRes(str(COCO_DIR / results)), iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            figures = [written[f"{iou_type}_{n}"] for n in names]
            assert max(abs(a - b) for a, b in zip(figures, evaluator.stats[:6])) <= 1e-12


def test_eval_results_with_masks_on_only_some_results(tmp_path):
    recipe = {"model": tiny_recipe(tmp_path)["model"],
              "data": {"test": {"type": "coco", "ann_file": str(COCO_DIR / "instances_val2014_100.json")}}}
    masks = json.loads((COCO_DIR / "instances_val2014_fakesegm100_results.json").read_text())
    boxes = json.loads((COCO_DIR / "instances_val2014_fakebbox100_results.json").read_text())
    results = tmp_path / "mixed.json"
    results.write_text(json.dumps(masks[:5] + boxes[:5]))
    assert_user_error(*sdk("eval", write_recipe(tmp_path / "r.toml", recipe), "--results", results),
                      "mixed.json", "5 of 10 results have a 'segmentation'")


def test_eval_results_with_a_malformed_results_file(tmp_path):
    recipe = {"model": tiny_recipe(tmp_path)["model"],
              "data": {"test": {"type": "coco", "ann_file": str(COCO_DIR / "instances_val2014_100.json")}}}
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1]}]))
    assert_user_error(*sdk("eval", write_recipe(tmp_path / "r.toml", recipe), "--results", results),
                      "results.json", "item 0")


def test_predict_draws_images_and_writes_coco_results(tmp_path, recipe_file):
    assert sdk("run", recipe_file, "--set", "train.iters=2", "--set", "runtime.plot_samples=0")[0] == 0
    import cv2
    import numpy as np

    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"img{i}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    code, output = sdk("predict", tmp_path / "run" / "last.pt", images, "--out", tmp_path / "out", "--score-thr", "0")
    assert code == 0, output
    assert (tmp_path / "out" / "img0.png").is_file() and (tmp_path / "out" / "img1.png").is_file()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert all({"image_id", "category_id", "bbox", "score"} <= r.keys() for r in results)
    assert cv2.imread(str(tmp_path / "out" / "img0.png")).shape == (48, 64, 3)


def test_an_undecodable_training_image_read_by_a_worker_is_named_on_one_line(tmp_path):
    import cv2
    import numpy as np

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "good.png"), np.zeros((32, 32, 3), np.uint8))
    (images / "bad.png").write_bytes(b"garbage")
    annotations = {
        "images": [{"id": 1, "file_name": "good.png", "height": 32, "width": 32},
                   {"id": 2, "file_name": "bad.png", "height": 32, "width": 32}],
        "annotations": [{"id": 1, "image_id": i, "category_id": 1, "bbox": [2, 2, 10, 10], "area": 100, "iscrowd": 0}
                        for i in (1, 2)],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    recipe = tiny_recipe(tmp_path / "run", data={"num_workers": 1, "batch_size": 2})
    recipe["data"]["train"] = {"type": "coco", "ann_file": str(tmp_path / "ann.json"), "images": str(images)}
    recipe["data"].pop("val")
    assert_user_error(*sdk("run", write_recipe(tmp_path / "r.toml", recipe)), "bad.png", "cannot decode")


def test_eval_with_a_checkpoint_writes_metrics(tmp_path, recipe_file):
    assert sdk("run", recipe_file, "--set", "train.iters=1", "--set", "runtime.plot_samples=0")[0] == 0
    (tmp_path / "run" / "metrics.json").unlink()
    code, output = sdk("eval", recipe_file, "--checkpoint", tmp_path / "run" / "last.pt")
    assert code == 0, output
    assert "bbox_mAP" in json.loads((tmp_path / "run" / "metrics.json").read_text())
