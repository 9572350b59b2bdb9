"""The engine: builds a recipe's parts and runs training, evaluation and prediction."""

from detsdk.engine.engine import Engine

__all__ = ["Engine"]
