"""A run's ``log.jsonl`` and ``metrics.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class RunLog:
    """Appends one JSON object per logged step or evaluation to ``log.jsonl``.

    ``enabled=False`` (every rank but 0 of a distributed run) writes nothing.
    """

    def __init__(self, work_dir: Path, enabled: bool = True):
        self.path = Path(work_dir) / "log.jsonl"
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line."""
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every record so far (an empty list before the first)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def drop_after(self, iteration: int) -> int:
        """Remove the records of iterations after ``iteration`` (``--resume`` trains them again); returns how many.

        A run killed while writing may leave a partial last line: it goes too.
        """
        if not self.enabled or not self.path.exists():
            return 0
        kept, dropped = [], 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                record = None
            if record is None or record.get("iter", 0) > iteration:
                dropped += bool(line.strip())
                continue
            kept.append(line)
        temp = self.path.with_name(".log.jsonl.tmp")
        temp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(temp, self.path)
        return dropped


def write_metrics(work_dir: Path, metrics: dict[str, float]) -> Path:
    """Write ``metrics.json`` atomically, at full float precision (json writes ``repr``)."""
    path = Path(work_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(".metrics.json.tmp")
    temp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, path)
    return path
