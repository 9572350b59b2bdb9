"""The conformance kit: a deliberately broken component of each kind fails with a line naming
component, check and finding; the good ones (built-ins, the shipped plugins) pass."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from detsdk import hookimpl
from detsdk.plugins import get_registry
from detsdk.testing import check_plugin, default_painted_sample
from detsdk.testing.config import CheckConfig, parse_check_table
from detsdk.testing.hooks import check_hook
from detsdk.testing.painted import alignment_problems

REPO = Path(__file__).resolve().parents[1]


# -- deliberately broken (and good) components, registered in-process as a plugin ----------------


class TinyBackbone(nn.Module):
    """Two stride-2 convolutions per level; ``strides`` may lie about them."""

    def __init__(self, strides: list = [4, 8]):  # noqa: B006
        super().__init__()
        self.out_channels, self.strides = [8, 16], list(strides)
        self.c2 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1))
        self.c3 = nn.Conv2d(8, 16, 3, 2, 1)

    def forward(self, images):
        c2 = self.c2(images)
        return OrderedDict(c2=c2, c3=self.c3(c2))


class StubbornNeck(nn.Module):
    """Ignores ``out_channels``: always 16 channels out."""

    def __init__(self, in_channels: list, out_channels: int = 16):
        super().__init__()
        self.out_channels = out_channels
        self.convs = nn.ModuleList(nn.Conv2d(c, 16, 1) for c in in_channels)

    def forward(self, features):
        return OrderedDict((k, conv(v)) for conv, (k, v) in zip(self.convs, features.items()))


class NanDetector(nn.Module):
    """Losses of NaN in training."""

    def __init__(self, backbone, neck, num_classes: int):
        super().__init__()
        self.backbone, self.num_classes = backbone, num_classes

    def forward(self, images, targets=None, image_sizes=None):
        feature = next(iter(self.backbone(images).values()))
        if self.training:
            return {"loss_cls": feature.mean() * float("nan"), "loss_bbox": feature.abs().mean()}
        return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
                for _ in images]


class XywhDataset:
    """Boxes as x y w h: objects away from the origin have no area as x1 y1 x2 y2."""

    classes = ["block"]

    def __len__(self):
        return 2

    def __getitem__(self, index):
        image = np.zeros((64, 64, 3), np.uint8)
        image[30:42, 40:50] = 255
        return {"image": image, "boxes": np.array([[40, 30, 10, 12]], np.float32), "labels": np.array([0]),
                "iscrowd": np.zeros(1, bool), "meta": {"image_id": index, "file": f"{index}.png"}}


class MaskForgettingFlip:
    """Flips the image and the boxes, records the flip, but leaves the masks where they were."""

    def __call__(self, sample):
        width = sample["image"].shape[1]
        sample["image"] = np.ascontiguousarray(sample["image"][:, ::-1])
        boxes = sample["boxes"].copy()
        boxes[:, [0, 2]] = width - sample["boxes"][:, [2, 0]]
        sample["boxes"] = boxes
        sample["meta"] = {**sample["meta"], "flip": True}
        return sample


class UnseededNoise:
    """Noise from a fresh, unseeded generator: the run's seed cannot reproduce it."""

    def __call__(self, sample):
        noise = np.random.default_rng().normal(0, 3, sample["image"].shape)
        sample["image"] = np.clip(sample["image"] + noise, 0, 255).astype(np.uint8)
        return sample


class RememberingMetric:
    """Keeps its images in a class attribute, so every new metric (and reset) still sees the old ones."""

    seen: list = []

    def reset(self):
        pass

    def process(self, samples, detections):
        for sample, detection in zip(samples, detections):
            self.seen.append(len(detection["scores"]) == len(sample["labels"]))

    def compute(self):
        return {"recall": float(np.mean(self.seen))}


def frozen_scheduler(optimizer, *, total_iters: int, iters_per_epoch: int):
    """Not an LRScheduler at all."""
    return lambda step: 1.0


def frozen_optimizer(params, lr: float = 0.0):
    """An SGD whose default learning rate is 0: a step moves nothing."""
    return torch.optim.SGD(params, lr=lr)


class BrokenPlugin:
    """A plugin with one broken component of each kind."""

    @hookimpl
    def detsdk_register_backbones(self, register):
        register("lying_strides", lambda: TinyBackbone(strides=[2, 4]))

    @hookimpl
    def detsdk_register_necks(self, register):
        register("stubborn", StubbornNeck)

    @hookimpl
    def detsdk_register_detectors(self, register):
        register("nan_losses", NanDetector)

    @hookimpl
    def detsdk_register_datasets(self, register):
        register("xywh", XywhDataset)

    @hookimpl
    def detsdk_register_transforms(self, register):
        register("mask_forgetting_flip", MaskForgettingFlip)
        register("unseeded_noise", UnseededNoise)

    @hookimpl
    def detsdk_register_schedulers(self, register):
        register("not_a_scheduler", frozen_scheduler)

    @hookimpl
    def detsdk_register_optimizers(self, register):
        register("frozen", frozen_optimizer)

    @hookimpl
    def detsdk_register_metrics(self, register):
        register("remembering", RememberingMetric)


@pytest.fixture(scope="module")
def broken_report():
    """The kit's report on ``BrokenPlugin``, computed once for the module."""
    from detsdk.plugins import reset_registry

    saved = os.environ.get("DETSDK_LOAD_PLUGINS")
    os.environ["DETSDK_LOAD_PLUGINS"] = ""
    reset_registry()
    try:
        get_registry().add_plugin("broken", "0.0", BrokenPlugin)
        config = parse_check_table({"detector": {"nan_losses": {"model": {"backbone": {
            "type": "detsdk/resnet", "depth": 18, "norm": "bn", "frozen_stages": -1}}}}}, "test")
        report = check_plugin("broken", config=config)
    finally:
        reset_registry()
        if saved is None:
            os.environ.pop("DETSDK_LOAD_PLUGINS", None)
        else:
            os.environ["DETSDK_LOAD_PLUGINS"] = saved
    return {(r.component, r.check): r for r in report.results}, report


@pytest.mark.parametrize(
    ("component", "check", "finding"),
    [
        ("backbone:broken/lying_strides", "outputs at 32x32", "'c2' is 8x8 for a 32x32 input: stride 4, strides says 2"),
        ("neck:broken/stubborn", "outputs", "has 16 channels, out_channels says 24"),
        ("detector:broken/nan_losses", "losses", "'loss_cls' is nan"),
        ("dataset:broken/xywh", "sample 0", "box [40, 30, 10, 12] has no area (needs x2 > x1 and y2 > y1) (x y w h boxes?"),
        ("transform:broken/mask_forgetting_flip", "boxes and masks on their objects", "its mask covers other pixels than its box"),
        ("transform:broken/unseeded_noise", "seeded", "the same seed gave a different image"),
        ("scheduler:broken/not_a_scheduler", "build", "expected a torch.optim.lr_scheduler.LRScheduler"),
        ("optimizer:broken/frozen", "step", "left the parameter unchanged"),
        ("metric:broken/remembering", "empty detections", "on 3 images, expected 0 (state kept between metric objects?)"),
        ("metric:broken/remembering", "reset", "it remembers the earlier run"),
    ],
)
def test_a_broken_component_fails_with_a_line_naming_component_check_and_finding(broken_report, component, check, finding):
    results, report = broken_report
    result = results[(component, check)]
    assert result.failed, result.line()
    assert finding in result.line() and result.line().startswith(f"FAIL  {component}  {check}: ")
    assert not report.ok


def test_the_good_checks_of_broken_components_still_pass(broken_report):
    results, _ = broken_report
    assert results[("backbone:broken/lying_strides", "gradients")].status == "passed"
    assert results[("dataset:broken/xywh", "len and classes")].status == "passed"
    assert results[("transform:broken/unseeded_noise", "boxes and masks on their objects")].status == "passed"
    assert results[("metric:broken/remembering", "perfect detections")].status == "passed"


def test_a_dataset_that_needs_files_is_a_counted_skip_naming_the_check_table():
    get_registry().add_plugin("needs_files", "0.0", NeedsFiles)
    report = check_plugin("needs_files")
    (result,) = report.results
    assert result.status == "skipped" and report.ok and report.count("skipped") == 1
    assert "needs parameters ann_file (add [tool.detsdk.check.dataset.coco_copy]" in result.line()
    assert "1 skipped" in report.summary()


def test_a_shipped_recipe_that_does_not_validate_fails_naming_it(tmp_path):
    (tmp_path / "good.toml").write_text('base = ["detsdk:faster_rcnn_r50_fpn_1x_coco.toml"]\n')
    (tmp_path / "bad.toml").write_text('base = ["detsdk:faster_rcnn_r50_fpn_1x_coco.toml"]\n[train]\nepochz = 3\n')
    (tmp_path / "_base").mkdir()
    (tmp_path / "_base" / "part.toml").write_text("[train]\nepochs = 1\n")

    class Recipes:
        @hookimpl
        def detsdk_register_recipes(self, register):
            register("recipes", str(tmp_path))

    get_registry().add_plugin("recipes", "0.0", Recipes)
    lines = [r.line() for r in check_plugin("recipes").results]
    assert len(lines) == 2 and lines[1] == "ok    recipe:recipes/recipes  recipes:good.toml: resolves and validates"
    assert lines[0].startswith("FAIL  recipe:recipes/recipes  recipes:bad.toml: does not resolve: RecipeError: ")
    assert "epochz" in lines[0]


class NeedsFiles:
    @hookimpl
    def detsdk_register_datasets(self, register):
        register("coco_copy", "detsdk.builtin.data.coco:CocoDataset")


# -- the built-ins, through the same check functions -------------------------------------------------


def test_builtin_components_pass(tmp_path):
    table = {
        "backbone": {"resnet": {"params": {"depth": 18, "norm": "bn", "frozen_stages": -1}}},
        "detector": {"faster_rcnn": {"model": {
            "rpn_head": {"type": "rpn_head", "anchor_sizes": [[16], [32], [64], [128], [256]]},
            "box_head": {"type": "shared2fc_box_head", "fc_channels": 32, "batch_size_per_image": 32}}}},
    }
    config = parse_check_table(table, "test")
    kinds = ["backbone", "neck", "detector", "transform", "scheduler", "optimizer", "metric"]
    from detsdk.testing.runner import check_component

    registry = get_registry()
    wanted = {("backbone", "resnet"), ("neck", "fpn"), ("detector", "faster_rcnn"), ("transform", "random_flip"),
              ("transform", "resize"), ("transform", "photometric_distortion"), ("transform", "normalize"),
              ("scheduler", "step"), ("optimizer", "sgd"), ("metric", "coco")}
    results = [r for kind in kinds for c in registry.components(kind) if (kind, c.name) in wanted
               for r in check_component(c, config, tmp_path, registry)]
    assert [r.line() for r in results if r.status != "passed"] == []
    assert {r.component for r in results} == {f"{k}:detsdk/{n}" for k, n in wanted}


def test_builtin_datasets_pass_with_the_check_table_of_det_sdks_pyproject():
    report = check_plugin("detsdk", kinds=["datasets"])
    assert report.ok and report.count("skipped") == 0, "\n".join(r.line() for r in report.results)
    assert {r.component for r in report.results} >= {"dataset:detsdk/coco", "dataset:detsdk/middle", "dataset:detsdk/concat"}


def test_a_head_is_reported_as_covered_by_the_detectors_that_build_it():
    report = check_plugin("detsdk", kinds=["heads"])
    lines = {r.component: r.line() for r in report.results}
    assert "checked inside detectors" in lines["head:detsdk/rpn_head"] and "detector:detsdk/faster_rcnn" in lines["head:detsdk/rpn_head"]
    assert [r.status for r in report.results if r.component == "head:detsdk/fcos_head"] == ["skipped"]
    # A head with a model table in the check table is checked inside that detector, on its own lines.
    inside = [r for r in report.results if r.component.startswith("head:detsdk/convfc_box_head (in detector faster_rcnn)")]
    assert inside and all(r.status == "passed" for r in inside)


# -- the shipped plugins and the template pass the kit -------------------------------------------------


@pytest.mark.parametrize("plugin", ["voc", "widerface", "cityscapes"])
def test_shipped_plugin_passes_the_kit(plugin, monkeypatch):
    from detsdk.plugins import reset_registry

    monkeypatch.setenv("DETSDK_LOAD_PLUGINS", plugin)
    monkeypatch.setenv("DETSDK_STRICT_PLUGINS", "1")
    reset_registry()
    report = check_plugin(plugin)
    assert report.ok, "\n".join(r.line() for r in report.results if r.failed)
    assert report.count("skipped") == 0 and {"dataset", "metric", "recipe"} <= {r.component.split(":")[0] for r in report.results}


def test_the_plugin_template_passes_the_kit_with_its_check_table(monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(REPO / "examples" / "plugin_template"))
    get_registry().add_plugin("toy", "0.1.0", lambda: importlib.import_module("det_plugin_toy.plugin"))
    report = check_plugin("toy")
    assert report.ok and report.count("skipped") == 0, "\n".join(r.line() for r in report.results)
    backbone = next(r for r in report.results if r.component == "backbone:toy/toy_convnet")
    assert "out_channels [8, 16, 32, 64]" in backbone.finding  # params = { width = 8 } from its pyproject.toml


# -- the pieces ---------------------------------------------------------------------------------------


def test_alignment_accepts_a_correct_flip_and_names_an_object_whose_box_stayed():
    before = default_painted_sample()
    flipped = default_painted_sample()
    from detsdk.builtin.transforms.geometric import RandomFlip

    flipped = RandomFlip(p=1.0)(flipped)
    assert alignment_problems(before, flipped) == []
    flipped["boxes"][1] = before["boxes"][1]
    assert any(p.startswith("object 1 (label 1, box [50, 10, 110, 60])") for p in alignment_problems(before, flipped))


def test_hook_methods_are_checked_against_the_contract_signatures():
    class Good:
        def after_iter(self, engine, iteration, losses):
            pass

        def after_eval(self, engine, metrics):
            pass

    class Bad:
        def after_iter(self, engine, iteration):
            pass

        def after_iteration(self, engine):
            pass

    assert all(r.status == "passed" for r in check_hook("hook:x/good", Good()))
    lines = [r.line() for r in check_hook("hook:x/bad", Bad()) if r.failed]
    assert any("after_iteration' is not a hook method (did you mean 'after_iter'?)" in line for line in lines)
    assert any(line.startswith("FAIL  hook:x/bad  after_iter: ") and "losses" in line for line in lines)


def test_a_registered_hook_is_built_from_its_parameters_and_checked(tmp_path):
    """The runner checks the ``hook`` kind (it iterates it once the registry has it, #10)."""
    from detsdk.plugins import Component
    from detsdk.testing.runner import check_component

    class EarlyStop:
        def __init__(self, patience: int = 3):
            self.patience = patience

        def after_eval(self, engine):
            pass

    results = check_component(Component("hook", "early_stop", "x", "0", EarlyStop), CheckConfig(), tmp_path)
    failing = [r.line() for r in results if r.failed]
    assert failing and failing[0].startswith("FAIL  hook:x/early_stop  after_eval: after_eval(engine) cannot be called")


def test_check_table_rejects_unknown_keys_naming_the_file_and_component():
    from detsdk.errors import PluginError

    with pytest.raises(PluginError, match=r"pyproject.toml: tool.detsdk.check.dataset.voc: unknown key\(s\) parms"):
        parse_check_table({"dataset": {"voc": {"parms": {}}}}, "pyproject.toml")
    assert CheckConfig().for_component("dataset", "voc").params == {}


def test_sdk_plugins_check_prints_one_line_per_check_and_exits_1_on_a_failure(tmp_path, run_sdk):
    site = tmp_path / "site"
    (site / "det_plugin_bad").mkdir(parents=True)
    (site / "det_plugin_bad" / "__init__.py").write_text(
        "import numpy as np\nfrom detsdk import hookimpl\n\n"
        "class Shuffle:\n    def __call__(self, sample):\n"
        "        sample['boxes'] = sample['boxes'][::-1].copy()\n        return sample\n\n"
        "@hookimpl\ndef detsdk_register_transforms(register):\n    register('shuffle', Shuffle)\n"
    )
    info = site / "det_plugin_bad-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: det-plugin-bad\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[detsdk]\nbad = det_plugin_bad\n")
    env = {"PYTHONPATH": f"{site}:{REPO / 'sdk'}", "DETSDK_LOAD_PLUGINS": "bad"}
    code, out, err = run_sdk("plugins", "check", "bad", env=env)
    assert code == 1, err
    lines = out.strip().splitlines()
    assert lines[-1] == "bad: 4 checks, 2 passed, 2 failed, 0 skipped"  # alignment, and meta: boxes moved unrecorded
    assert lines[0].startswith("FAIL  transform:bad/shuffle  boxes and masks on their objects: seed 0: object 0")


def test_sdk_plugins_check_json_counts_a_skip_and_exits_0():
    from click.testing import CliRunner

    from detsdk.cli.main import cli

    get_registry().add_plugin("needs_files", "0.0", NeedsFiles)
    result = CliRunner().invoke(cli, ["plugins", "check", "needs_files", "--json"])
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["ok"] and (data["passed"], data["failed"], data["skipped"]) == (0, 0, 1)
    assert data["results"][0]["component"] == "dataset:needs_files/coco_copy"


def test_pytest_plugin_parametrises_the_checks_over_a_plugins_components(tmp_path):
    import subprocess
    import sys

    (tmp_path / "test_conformance.py").write_text(
        "from detsdk.testing.pytest_plugin import test_component_conforms  # noqa: F401\n\n\n"
        "def test_painted_sample_fixture(painted_sample):\n"
        "    assert painted_sample['masks'].shape == (4, 96, 128)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "detsdk.testing.pytest_plugin", "--detsdk-plugin", "voc", "-v",
         "-p", "no:cacheprovider", "-p", "no:xdist", str(tmp_path / "test_conformance.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "DETSDK_LOAD_PLUGINS": "voc", "DETSDK_STRICT_PLUGINS": "1"},
    )
    assert completed.returncode == 0, completed.stdout[-3000:]
    for test_id in ("dataset:voc/voc", "metric:voc/voc", "recipe:voc/voc"):
        assert f"test_component_conforms[{test_id}] PASSED" in completed.stdout
    assert "4 passed" in completed.stdout


def test_builtin_transforms_and_hooks_pass_mixing_transforms_and_optional_hook_methods_included():
    report = check_plugin("detsdk", kinds=["transforms", "hooks"])
    assert report.ok and report.count("skipped") == 0, "\n".join(r.line() for r in report.results)
    checked = {r.component for r in report.results}
    assert {"transform:detsdk/mosaic", "transform:detsdk/mixup", "hook:detsdk/early_stopping",
            "hook:detsdk/pipeline_switch"} <= checked
