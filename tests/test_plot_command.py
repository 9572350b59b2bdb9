"""sdk plot: curves of log.jsonl keys, several runs on one figure; unknown keys exit 2 naming the keys present."""

from __future__ import annotations

import json

import cv2
from click.testing import CliRunner

from detsdk.cli.main import cli


def write_log(path, scale: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [{"mode": "train", "epoch": 1, "iter": i, "lr": 0.01, "loss": scale / i, "loss_cls": scale / (2 * i)}
               for i in range(1, 6)]
    records.append({"mode": "val", "split": "val", "epoch": 1, "iter": 5, "bbox_mAP": 0.3 * scale})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_plot_draws_the_keys_of_several_logs_into_a_png(tmp_path):
    first, second = write_log(tmp_path / "a" / "log.jsonl", 1.0), write_log(tmp_path / "b" / "log.jsonl", 2.0)
    out = tmp_path / "curves.png"
    result = CliRunner().invoke(cli, ["plot", str(first), str(second), "--keys", "loss", "bbox_mAP",
                                      "--legend", "baseline", "ema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > image.shape[1] * 0.6  # two panels, stacked


def test_plot_rejects_an_unknown_key_listing_the_keys_present(tmp_path):
    log = write_log(tmp_path / "run" / "log.jsonl", 1.0)
    result = CliRunner().invoke(cli, ["plot", str(log), "--keys", "loss", "bbox_map", "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 2
    assert "key 'bbox_map' is not in" in result.output
    assert "keys present: lr, loss, loss_cls, bbox_mAP" in result.output
    assert not (tmp_path / "c.png").exists()


def test_plot_needs_one_legend_label_per_log(tmp_path):
    log = write_log(tmp_path / "run" / "log.jsonl", 1.0)
    result = CliRunner().invoke(cli, ["plot", str(log), "--legend", "a", "b", "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 2 and "--legend gave 2 labels for 1 logs" in result.output
