"""The 8 Cityscapes instance classes, taken from cityscapesscripts' label table.

A class is evaluated as instances when its label has ``hasInstances`` and not
``ignoreInEval`` (what the official evaluator and MMDetection's converter use):
person, rider, car, truck, bus, train, motorcycle, bicycle.
"""

from __future__ import annotations

from cityscapesscripts.helpers.labels import id2label, labels, name2label

INSTANCE_LABELS = [label for label in labels if label.hasInstances and not label.ignoreInEval]
CLASSES: list[str] = [label.name for label in INSTANCE_LABELS]
# Cityscapes label id of each class: the COCO category id and the evaluator's labelID.
LABEL_IDS: list[int] = [label.id for label in INSTANCE_LABELS]
# Instance images: stuff and void pixels hold their label id (< 24); instance labels start at 24.
FIRST_INSTANCE_LABEL_ID = min(LABEL_IDS)

__all__ = ["CLASSES", "FIRST_INSTANCE_LABEL_ID", "INSTANCE_LABELS", "LABEL_IDS", "id2label", "name2label"]
