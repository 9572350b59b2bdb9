"""MMDetection 3.x RTMDet checkpoints: key names written out from MMDetection's source, converted to det-sdk's."""

from __future__ import annotations

import torch
from click.testing import CliRunner
from conftest import REPO

from detsdk.builtin.models.cspnext import CSPNeXt
from detsdk.builtin.models.cspnext_pafpn import CSPNeXtPAFPN
from detsdk.builtin.models.rtmdet import build_rtmdet
from detsdk.cli import cli
from detsdk.engine.checkpoint import load_checkpoint
from detsdk.engine.interop import to_detsdk
from detsdk.engine.interop_rtmdet import MMDETECTION_RTMDET

QUICKSTART = REPO / "examples" / "quickstart" / "rtmdet.toml"
BGR_MEAN, BGR_STD = [103.53, 116.28, 123.675], [57.375, 57.12, 58.395]


def _conv_module(prefix: str, cin: int, cout: int, k: int, groups: int = 1) -> dict:
    """mmcv ConvModule(norm_cfg=BN): conv (no bias) and bn."""
    return {f"{prefix}.conv.weight": (cout, cin // groups, k, k), f"{prefix}.bn.weight": (cout,),
            f"{prefix}.bn.bias": (cout,), f"{prefix}.bn.running_mean": (cout,), f"{prefix}.bn.running_var": (cout,),
            f"{prefix}.bn.num_batches_tracked": ()}


def _depthwise(prefix: str, cin: int, cout: int, k: int) -> dict:
    """mmcv DepthwiseSeparableConvModule: depthwise_conv then pointwise_conv."""
    return {**_conv_module(f"{prefix}.depthwise_conv", cin, cin, k, groups=cin),
            **_conv_module(f"{prefix}.pointwise_conv", cin, cout, 1)}


def _csp_layer(prefix: str, cin: int, cout: int, blocks: int, attention: bool) -> dict:
    """mmdet CSPLayer(use_cspnext_block=True, expand_ratio=0.5): CSPNeXtBlock = 3x3 ConvModule + 5x5 depthwise."""
    mid = int(cout * 0.5)
    keys = {**_conv_module(f"{prefix}.main_conv", cin, mid, 1), **_conv_module(f"{prefix}.short_conv", cin, mid, 1),
            **_conv_module(f"{prefix}.final_conv", 2 * mid, cout, 1)}
    for j in range(blocks):
        keys |= _conv_module(f"{prefix}.blocks.{j}.conv1", mid, mid, 3) | _depthwise(f"{prefix}.blocks.{j}.conv2", mid, mid, 5)
    if attention:
        keys |= {f"{prefix}.attention.fc.weight": (2 * mid, 2 * mid, 1, 1), f"{prefix}.attention.fc.bias": (2 * mid,)}
    return keys


def mmdet_rtmdet_tiny_shapes(num_classes: int = 80) -> dict[str, tuple]:
    """Every key and shape of MMDetection 3.x's RTMDet-tiny state dict (CSPNeXt P5 0.167/0.375,
    CSPNeXtPAFPN [96, 192, 384] -> 96 with 1 block, RTMDetSepBNHead 96 channels, 2 stacked convs)."""
    deepen, widen = 0.167, 0.375
    arch = [[64, 128, 3, True, False], [128, 256, 6, True, False], [256, 512, 6, True, False], [512, 1024, 3, False, True]]
    stem = int(64 * widen // 2)
    keys = _conv_module("backbone.stem.0", 3, stem, 3) | _conv_module("backbone.stem.1", stem, stem, 3)
    keys |= _conv_module("backbone.stem.2", stem, int(64 * widen), 3)
    for i, (cin, cout, blocks, _, spp) in enumerate(arch, start=1):
        cin, cout, blocks = int(cin * widen), int(cout * widen), max(round(blocks * deepen), 1)
        keys |= _conv_module(f"backbone.stage{i}.0", cin, cout, 3)
        if spp:
            keys |= _conv_module(f"backbone.stage{i}.1.conv1", cout, cout // 2, 1)
            keys |= _conv_module(f"backbone.stage{i}.1.conv2", cout // 2 * 4, cout, 1)
        keys |= _csp_layer(f"backbone.stage{i}.{2 if spp else 1}", cout, cout, blocks, attention=True)
    channels = [96, 192, 384]
    for k, idx in enumerate(range(2, 0, -1)):
        keys |= _conv_module(f"neck.reduce_layers.{k}", channels[idx], channels[idx - 1], 1)
        keys |= _csp_layer(f"neck.top_down_blocks.{k}", channels[idx - 1] * 2, channels[idx - 1], 1, attention=False)
    for idx in range(2):
        keys |= _conv_module(f"neck.downsamples.{idx}", channels[idx], channels[idx], 3)
        keys |= _csp_layer(f"neck.bottom_up_blocks.{idx}", channels[idx] * 2, channels[idx + 1], 1, attention=False)
    for i, c in enumerate(channels):
        keys |= _conv_module(f"neck.out_convs.{i}", c, 96, 3)
    for level in range(3):
        for i in range(2):
            keys |= _conv_module(f"bbox_head.cls_convs.{level}.{i}", 96, 96, 3)
            keys |= _conv_module(f"bbox_head.reg_convs.{level}.{i}", 96, 96, 3)
        keys |= {f"bbox_head.rtm_cls.{level}.weight": (num_classes, 96, 1, 1), f"bbox_head.rtm_cls.{level}.bias": (num_classes,),
                 f"bbox_head.rtm_reg.{level}.weight": (4, 96, 1, 1), f"bbox_head.rtm_reg.{level}.bias": (4,)}
    return keys


def mmdet_rtmdet_tiny(num_classes: int = 80) -> dict[str, torch.Tensor]:
    """That state dict with random values (head convs shared across levels, as MMDetection saves them)."""
    torch.manual_seed(0)
    state = {}
    for key, shape in mmdet_rtmdet_tiny_shapes(num_classes).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape) + 0.5
        else:
            state[key] = torch.randn(shape) * 0.1
    for key in list(state):
        parts = key.split(".")
        if parts[1] in ("cls_convs", "reg_convs") and parts[4] == "conv" and parts[2] != "0":
            state[key] = state[".".join(parts[:2] + ["0"] + parts[3:])]
    state["data_preprocessor.mean"] = torch.tensor(BGR_MEAN).view(3, 1, 1)
    return state


def tiny_model(num_classes: int = 80):
    backbone = CSPNeXt(deepen_factor=0.167, widen_factor=0.375)
    neck = CSPNeXtPAFPN(backbone.out_channels, out_channels=96, num_csp_blocks=1)
    return build_rtmdet(backbone, neck, num_classes, {"type": "rtmdet_head", "feat_channels": 96}).eval()


def test_every_mmdetection_rtmdet_key_lands_in_the_model_with_its_shape():
    conversion = to_detsdk(mmdet_rtmdet_tiny())
    assert conversion.source_format == MMDETECTION_RTMDET and not conversion.unplaced
    model = tiny_model()
    result = model.load_state_dict(conversion.weights, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert conversion.renamed_from["head.rtm_cls.2.bias"] == "bbox_head.rtm_cls.2.bias"
    assert any("BGR" in note for note in conversion.notes) and any("data_preprocessor" in n for n in conversion.notes)


def test_converted_model_on_rgb_matches_mmdetections_weights_on_bgr():
    weights = mmdet_rtmdet_tiny(num_classes=3)
    converted = tiny_model(3)
    converted.load_state_dict(to_detsdk(weights).weights)
    as_saved = tiny_model(3)  # MMDetection's weights unchanged (no channel flip), fed BGR as MMDetection does
    as_saved.load_state_dict({k.replace("bbox_head.", "head."): v for k, v in weights.items() if "preprocessor" not in k})
    rgb = torch.randint(0, 256, (1, 3, 64, 64)).float()
    bgr = rgb.flip(1)
    rgb_in = (rgb - torch.tensor(BGR_MEAN[::-1]).view(1, 3, 1, 1)) / torch.tensor(BGR_STD[::-1]).view(1, 3, 1, 1)
    bgr_in = (bgr - torch.tensor(BGR_MEAN).view(1, 3, 1, 1)) / torch.tensor(BGR_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = converted.head.predict_raw(list(converted.extract_features(rgb_in).values()))
        theirs = as_saved.head.predict_raw(list(as_saved.extract_features(bgr_in).values()))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_sdk_convert_mmdet_writes_an_rtmdet_checkpoint(tmp_path):
    source = tmp_path / "rtmdet_tiny.pth"
    torch.save({"state_dict": mmdet_rtmdet_tiny(), "meta": {"CLASSES": [f"c{i}" for i in range(80)]}}, source)
    out = tmp_path / "converted.pt"
    result = CliRunner().invoke(cli, ["convert", "mmdet", str(source), "--recipe", str(QUICKSTART), "--out", str(out),
                                      "--strict"])
    assert result.exit_code == 0, result.output
    assert "MMDetection 3.x RTMDet" in result.output and "num_classes 80" in result.output
    checkpoint = load_checkpoint(out)
    assert checkpoint["classes"][:2] == ["c0", "c1"]
    torch.testing.assert_close(checkpoint["model"]["backbone.stem.0.conv.weight"],
                               mmdet_rtmdet_tiny()["backbone.stem.0.conv.weight"].flip(1))
