"""Tiny dataset trees in official formats (VOC XML, WIDER FACE text, middle-format JSON) for tests.

Each object is drawn as a solid rectangle on a dark image, so a detector has
something to learn and boxes can be checked against pixels. The VOC and WIDER
FACE writers live in their plugins (``check_fixture``: the conformance kit
builds the datasets on them too); the drawing helpers in ``detsdk.testing``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from det_plugin_voc.check_fixture import random_voc_year, voc_xml, write_voc_year  # noqa: F401
from det_plugin_widerface.check_fixture import random_widerface, write_widerface  # noqa: F401

from detsdk.testing.painted import COLOURS, draw, random_objects  # noqa: F401


# -- middle format ------------------------------------------------------------------


def random_middle(folder: Path, count: int, seed: int, num_classes: int = 2) -> Path:
    """``ann.json`` in the middle format and ``img/``; image 0 also has an ignore box with its label."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(count):
        objects = random_objects(rng, int(rng.integers(1, 4)), num_classes)
        draw(folder / "img" / f"{i}.png", (64, 64), [o[1:] for o in objects], [o[0] for o in objects])
        ann = {"bboxes": [list(map(float, o[1:])) for o in objects], "labels": [o[0] for o in objects]}
        if i == 0:
            ann.update(bboxes_ignore=[[50.0, 50.0, 60.0, 60.0]], labels_ignore=[1])
        entries.append({"filename": f"{i}.png", "width": 64, "height": 64, "ann": ann})
    path = folder / "ann.json"
    path.write_text(json.dumps(entries))
    return path
