"""``pipeline_switch``: from an epoch on, the training pipeline is another list of transforms.

MMDetection's ``PipelineSwitchHook`` (YOLOX and RTMDet train their last epochs
without Mosaic/MixUp). Here the switch is a *stage* of the training dataset
(``PipelineDataset.add_stage``): every sample picks its stage by the epoch it
belongs to, so DataLoader workers (persistent ones too) switch with the main
process, and ``--resume`` across the switch stays exact.
"""

from __future__ import annotations

from detsdk.errors import RecipeError
from detsdk.plugins.build import build_component


class PipelineSwitch:
    """Train with ``pipeline`` from 1-based epoch ``switch_epoch`` on.

    Epochs are numbered from 1 as in ``log.jsonl``: with ``switch_epoch = 3`` epochs
    1 and 2 use ``data.train.pipeline`` and epochs 3, 4, ... use ``pipeline``.
    MMDetection's ``switch_epoch`` counts from 0, so its ``switch_epoch = 280`` is
    ``switch_epoch = 281`` here. Iteration-based runs count epochs the same way
    (an epoch is one pass over the training set).

    Args:
        switch_epoch: the first epoch (1-based) trained with ``pipeline``.
        pipeline: transform tables, as in ``data.train.pipeline``.
    """

    def __init__(self, switch_epoch: int, pipeline: list):
        if isinstance(switch_epoch, bool) or not isinstance(switch_epoch, int) or switch_epoch < 1:
            raise RecipeError(f"pipeline_switch: switch_epoch = {switch_epoch!r}: expected an integer >= 1 (1-based epoch)")
        if not isinstance(pipeline, list) or not pipeline:
            raise RecipeError("pipeline_switch: pipeline: expected a non-empty array of transform tables")
        self.switch_epoch = switch_epoch
        self.transforms = [
            build_component("transform", step, where=f"pipeline_switch.pipeline[{i}]") for i, step in enumerate(pipeline)
        ]

    def before_train(self, engine) -> None:
        """Add the stage before the loader's workers start (also on ``--resume``)."""
        engine.add_train_pipeline_stage(self.switch_epoch, self.transforms)
