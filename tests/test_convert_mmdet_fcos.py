"""MMDetection FCOS checkpoints (key names of mmdet's FCOSHead / AnchorFreeHead, 2.x and 3.x) to det-sdk's fcos."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from detsdk.cli import cli
from detsdk.engine.checkpoint import load_checkpoint
from detsdk.engine.interop import MMDETECTION, checkpoint_format, to_detsdk

RECIPE = "detsdk:fcos_r50_fpn_1x_coco.toml"
# A small FCOS: ResNet-18 (C3-C5: 128, 256, 512 channels), a 64-channel FPN; the key names are MMDetection's.
SMALL = ["model.backbone.depth=18", "model.neck.out_channels=64", "model.backbone.pretrained=''"]
CLASSES = 3
CHANNELS = 64


def mmdet_fcos(norm: bool = True, early_names: bool = False) -> dict[str, torch.Tensor]:
    """An FCOS R18-FPN ``state_dict`` as MMDetection saves it (random values).

    ResNet keys are torchvision's (MMDetection's ResNet, pytorch or caffe style, names them alike);
    FPN ``add_extra_convs='on_output'`` (``fpn_convs.3``/``.4`` are P6/P7); FCOSHead towers are
    ConvModules (``.conv``, ``.gn``; no conv bias when GN follows), ``conv_cls``, ``conv_reg``,
    ``conv_centerness`` (``fcos_*`` in early checkpoints) and one ``Scale`` per level.
    """
    from detsdk.builtin.models.resnet import ResNet

    state = {f"backbone.{k}": torch.randn(v.shape) if v.is_floating_point() else v
             for k, v in ResNet(depth=18, norm="bn").state_dict().items()}
    for i, channels in enumerate([128, 256, 512]):
        state[f"neck.lateral_convs.{i}.conv.weight"] = torch.randn(CHANNELS, channels, 1, 1)
        state[f"neck.lateral_convs.{i}.conv.bias"] = torch.randn(CHANNELS)
    for i in range(5):
        state[f"neck.fpn_convs.{i}.conv.weight"] = torch.randn(CHANNELS, CHANNELS, 3, 3)
        state[f"neck.fpn_convs.{i}.conv.bias"] = torch.randn(CHANNELS)
    for branch in ("cls", "reg"):
        for i in range(4):
            state[f"bbox_head.{branch}_convs.{i}.conv.weight"] = torch.randn(CHANNELS, CHANNELS, 3, 3)
            if norm:
                state[f"bbox_head.{branch}_convs.{i}.gn.weight"] = torch.randn(CHANNELS)
                state[f"bbox_head.{branch}_convs.{i}.gn.bias"] = torch.randn(CHANNELS)
            else:
                state[f"bbox_head.{branch}_convs.{i}.conv.bias"] = torch.randn(CHANNELS)
    prefix = "fcos" if early_names else "conv"
    for name, rows in (("cls", CLASSES), ("reg", 4), ("centerness", 1)):
        state[f"bbox_head.{prefix}_{name}.weight"] = torch.randn(rows, CHANNELS, 3, 3)
        state[f"bbox_head.{prefix}_{name}.bias"] = torch.randn(rows)
    for i in range(5):
        state[f"bbox_head.scales.{i}.scale"] = torch.tensor(1.0 + i / 100)
    return state


def convert(tmp_path, state, meta, *overrides, strict=False):
    source, out = tmp_path / "fcos.pth", tmp_path / "fcos.pt"
    torch.save({"meta": meta, "state_dict": state}, source)
    args = ["convert", "mmdet", str(source), "--recipe", RECIPE, "--out", str(out)]
    for override in (*SMALL, *overrides):
        args += ["--set", override]
    result = CliRunner().invoke(cli, args + ["--strict"] * strict)
    return result, out


def test_fcos_keys_are_recognised_as_mmdetection():
    assert checkpoint_format(mmdet_fcos()) == MMDETECTION


@pytest.mark.parametrize("early_names", [False, True])
def test_fcos_gn_head_places_every_weight_but_the_level_scales(tmp_path, early_names):
    state = mmdet_fcos(early_names=early_names)
    result, out = convert(tmp_path, state, {"CLASSES": ["a", "b", "c"]})
    assert result.exit_code == 0, result.output
    unplaced = result.output.split("not placed (")[1].split("det-sdk weights left")[0]
    assert unplaced.startswith("5):") and all(f"bbox_head.scales.{i}.scale" in unplaced for i in range(5))
    assert "left at their initialisation (0)" in result.output
    assert "bbox_head.scales (1, 1.01, 1.02, 1.03, 1.04)" in result.output
    weights = load_checkpoint(out)["model"]
    prefix = "fcos" if early_names else "conv"
    pairs = {
        "neck.fpn.inner_blocks.0.0.weight": "neck.lateral_convs.0.conv.weight",
        "neck.fpn.extra_blocks.p6.weight": "neck.fpn_convs.3.conv.weight",
        "neck.fpn.extra_blocks.p7.bias": "neck.fpn_convs.4.conv.bias",
        "head.classification_head.conv.0.weight": "bbox_head.cls_convs.0.conv.weight",
        "head.classification_head.conv.1.weight": "bbox_head.cls_convs.0.gn.weight",
        "head.regression_head.conv.10.bias": "bbox_head.reg_convs.3.gn.bias",
        "head.classification_head.cls_logits.weight": f"bbox_head.{prefix}_cls.weight",
        "head.regression_head.bbox_reg.bias": f"bbox_head.{prefix}_reg.bias",
        "head.regression_head.bbox_ctrness.weight": f"bbox_head.{prefix}_centerness.weight",
    }
    for ours, theirs in pairs.items():
        torch.testing.assert_close(weights[ours], state[theirs])
    # GN towers have no conv bias in MMDetection: det-sdk's are zero, the same function.
    assert torch.count_nonzero(weights["head.classification_head.conv.9.bias"]) == 0


def test_fcos_head_without_norm_keeps_its_conv_biases(tmp_path):
    state = mmdet_fcos(norm=False)
    result, out = convert(tmp_path, state, {}, 'model.head.norm="none"')
    assert result.exit_code == 0, result.output
    assert "left at their initialisation (0)" in result.output
    weights = load_checkpoint(out)["model"]
    torch.testing.assert_close(weights["head.regression_head.conv.3.bias"], state["bbox_head.reg_convs.1.conv.bias"])


def test_an_mmdetection_3_checkpoint_gives_its_class_names_from_dataset_meta(tmp_path):
    meta = {"dataset_meta": {"classes": ("cat", "dog", "bird")}, "mmdet_version": "3.3.0", "epoch": 12}
    result, out = convert(tmp_path, mmdet_fcos(), meta)
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(out)
    assert checkpoint["classes"] == ["cat", "dog", "bird"]


def test_strict_refuses_fcos_because_the_scales_have_no_place(tmp_path):
    result, out = convert(tmp_path, mmdet_fcos(), {}, strict=True)
    assert result.exit_code == 2 and "bbox_head.scales.0.scale" in result.output and not out.exists()


def test_load_from_renames_fcos_weights_as_the_converter_does():
    state = mmdet_fcos()
    conversion = to_detsdk(state)
    assert conversion.source_key("head.regression_head.bbox_ctrness.bias") == "bbox_head.conv_centerness.bias"
    assert sorted(conversion.unplaced) == [f"bbox_head.scales.{i}.scale" for i in range(5)]


FAKE_MMENGINE = '''
class HistoryBuffer:
    def __init__(self, values=None):
        self.values = values


class RunsCode:
    def __reduce__(self):
        import os
        return (os.system, ("touch {marker}",))
'''
SAVE = '''
import sys
import numpy as np
import torch
from mmengine.logging import HistoryBuffer, RunsCode
state = torch.load(sys.argv[1], weights_only=True)
checkpoint = {{"meta": {{"dataset_meta": {{"classes": ("cat", "dog", "bird")}}, "seed": np.int64(7),
                        "hook_msgs": {{"last_ckpt": "epoch_12.pth"}}}},
               "state_dict": state, "message_hub": {{"log_scalars": {{"loss": HistoryBuffer([1.0, 0.5])}}}}}}
if sys.argv[3] == "evil":
    checkpoint["extra"] = RunsCode()
torch.save(checkpoint, sys.argv[2])
'''


def mmengine_checkpoint(tmp_path, kind: str):
    """A checkpoint saved the way MMEngine saves one: a message hub and NumPy values beside the weights.

    The stand-in ``mmengine`` package exists only for the subprocess that saves the file: the test
    process cannot import it, so loading the file cannot have used it.
    """
    import subprocess
    import sys

    package = tmp_path / "fake" / "mmengine" / "logging"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text(FAKE_MMENGINE.format(marker=tmp_path / "MARKER"))
    weights, out = tmp_path / "weights.pt", tmp_path / f"{kind}.pth"
    torch.save(mmdet_fcos(), weights)
    subprocess.run([sys.executable, "-c", SAVE.format(), str(weights), str(out), kind], check=True,
                   env={"PYTHONPATH": str(tmp_path / "fake"), "PATH": "/usr/bin:/bin"})
    return out


def test_an_mmengine_checkpoint_loads_with_its_message_hub_left_inert(tmp_path):
    source = mmengine_checkpoint(tmp_path, "mmengine")
    out = tmp_path / "fcos.pt"
    args = ["convert", "mmdet", str(source), "--recipe", RECIPE, "--out", str(out)]
    for override in SMALL:
        args += ["--set", override]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out)["classes"] == ["cat", "dog", "bird"]
    state = load_checkpoint(source)
    assert type(state["message_hub"]["log_scalars"]["loss"]).__module__ == "mmengine.logging"
    assert not hasattr(state["message_hub"]["log_scalars"]["loss"], "values")  # a stub: nothing of it ran


def test_an_mmengine_checkpoint_that_would_run_code_is_still_refused(tmp_path):
    from detsdk.engine.checkpoint import load_checkpoint as load
    from detsdk.errors import CheckpointError

    source = mmengine_checkpoint(tmp_path, "evil")
    with pytest.raises(CheckpointError, match="refused"):
        load(source)
    assert not (tmp_path / "MARKER").exists()
