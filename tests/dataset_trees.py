"""Tiny dataset trees in official formats (VOC XML, WIDER FACE text, middle-format JSON) for tests.

Each object is drawn as a solid rectangle on a dark image, so a detector has
something to learn and boxes can be checked against pixels. The VOC and WIDER
FACE writers live in their plugins' ``check_fixture`` modules, the middle-format
one in ``detsdk.testing.builtin_fixtures`` (the conformance kit builds the datasets on
them too), the drawing helpers in ``detsdk.testing``.
"""

from __future__ import annotations

from det_plugin_voc.check_fixture import random_voc_year, voc_xml, write_voc_year  # noqa: F401
from det_plugin_widerface.check_fixture import random_widerface, write_widerface  # noqa: F401

from detsdk.testing.builtin_fixtures import random_middle  # noqa: F401
from detsdk.testing.painted import COLOURS, draw, random_objects  # noqa: F401
