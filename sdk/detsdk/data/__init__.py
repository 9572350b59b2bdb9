"""Turning a dataset and a pipeline into batches for the engine."""

from detsdk.data.loader import PipelineDataset, build_loader, collate

__all__ = ["PipelineDataset", "build_loader", "collate"]
