"""What an exported model carries besides its graph: classes, pipeline, versions, recipe. Free of torch.

Stored as ONNX ``metadata_props`` (string keys and values, JSON or TOML inside), which
ONNX Runtime reads back as ``custom_metadata_map`` without the ``onnx`` package.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from detsdk.errors import CheckpointError
from detsdk.export.pipeline import InferencePipeline

PREFIX = "detsdk."


@attrs.frozen
class ExportMetadata:
    """An exported detector's metadata: ``classes``, ``pipeline``, ``detector`` type, versions, ``recipe`` (TOML)."""

    classes: list[str]
    pipeline: InferencePipeline
    detector: str
    detsdk_version: str
    recipe: str
    cat_ids: list[int] | None = None
    checkpoint_version: str | None = None
    batch: int = 1
    outputs: list[str] = attrs.field(factory=list)
    mask_format: str | None = None  # "box": masks are K x M x M in each box, pasted as mask_paste says
    mask_paste: str | None = None  # "torchvision" or "mmdet" (detsdk.export.mask_paste)

    def to_props(self) -> dict[str, str]:
        """String key/value pairs for ``metadata_props`` (keys prefixed ``detsdk.``)."""
        values = attrs.asdict(self, recurse=False)
        values["pipeline"] = self.pipeline.to_dict()
        return {PREFIX + key: value if key == "recipe" else json.dumps(value) for key, value in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str | Path) -> ExportMetadata:
        """Read the pairs back; a file without them is not a det-sdk export (one clear line)."""
        missing = [f.name for f in attrs.fields(cls) if PREFIX + f.name not in props and f.name in REQUIRED]
        if missing:
            raise CheckpointError(
                f"{source}: not a det-sdk ONNX export (no {', '.join(PREFIX + m for m in missing)} metadata); "
                "export it with sdk export"
            )
        values = {}
        for field in attrs.fields(cls):
            key = PREFIX + field.name
            if key in props:
                values[field.name] = props[key] if field.name == "recipe" else json.loads(props[key])
        values["pipeline"] = InferencePipeline.from_dict(values["pipeline"])
        return cls(**values)


REQUIRED = ("classes", "pipeline", "detector", "detsdk_version", "recipe")
