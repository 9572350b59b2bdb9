"""Curves from ``log.jsonl`` files: any logged key against the iteration, several runs on one figure.

MMDetection's ``tools/analysis_tools/analyze_logs.py plot_curve``, for det-sdk's
logs: a training key (``loss``, ``loss_cls``, ``lr``, ``time``) comes from the
``mode = "train"`` records, a metric (``bbox_mAP``) from the evaluations. One
panel per key; each log is one line in every panel.

    >>> plot_logs([Path("runs/a/log.jsonl")], ["loss", "bbox_mAP"], Path("curves.png"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detsdk.errors import DataError

NOT_PLOTTED = {"mode", "split", "epoch", "iter"}


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl``; a line that is not JSON is an error naming the file and line."""
    if not path.is_file():
        raise DataError(f"log not found: {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not a JSON record ({exc.msg})") from None
        if not isinstance(record, dict) or "iter" not in record:
            raise DataError(f"{path}:{number}: expected a det-sdk log record with an 'iter' key")
        records.append(record)
    return records


def numeric_keys(records: list[dict[str, Any]]) -> list[str]:
    """The keys a log can plot (numbers, in the order they first appear)."""
    keys: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if key not in NOT_PLOTTED and isinstance(value, (int, float)) and not isinstance(value, bool):
                keys.setdefault(key)
    return list(keys)


def series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """``(iterations, values)`` of ``key``; when a resumed run logged an iteration twice, the last one wins."""
    points: dict[int, float] = {}
    for record in records:
        if key in record and not isinstance(record[key], bool) and isinstance(record[key], (int, float)):
            points[int(record["iter"])] = float(record[key])
    iterations = sorted(points)
    return iterations, [points[i] for i in iterations]


def default_label(path: Path) -> str:
    """A run's name: its work dir (the log's folder) for ``log.jsonl``, else the file's stem."""
    return (path.parent.name or path.stem) if path.name == "log.jsonl" else path.stem


def plot_logs(paths: list[Path], keys: list[str], out: Path, labels: list[str] | None = None,
              title: str = "") -> Path:
    """Draw ``keys`` from every log into ``out`` (PNG, PDF, SVG: by its suffix).

    Raises ``DataError`` when a key is in none of the logs, listing the keys they have.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [read_log(path) for path in paths]
    labels = labels or [default_label(path) for path in paths]
    if len(labels) != len(paths):
        raise DataError(f"--legend gave {len(labels)} labels for {len(paths)} logs; give one label per log")
    present = {key for records in logs for key in numeric_keys(records)}
    unknown = [key for key in keys if key not in present]
    if unknown:
        available = list(dict.fromkeys(k for records in logs for k in numeric_keys(records)))
        raise DataError(
            f"key {', '.join(repr(k) for k in unknown)} is not in {', '.join(map(str, paths))}; "
            f"keys present: {', '.join(available) or 'none'}"
        )
    figure, axes = plt.subplots(len(keys), 1, figsize=(7, 2.8 * len(keys)), squeeze=False, sharex=True)
    for axis, key in zip(axes[:, 0], keys):
        for records, label in zip(logs, labels):
            iterations, values = series(records, key)
            if iterations:
                axis.plot(iterations, values, label=label, marker="o" if len(iterations) < 30 else None)
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[-1, 0].set_xlabel("iteration")
    if title:
        axes[0, 0].set_title(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
