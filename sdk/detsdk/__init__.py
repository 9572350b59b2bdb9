"""det-sdk: an object-detection SDK for PyTorch.

``import detsdk`` stays light: torch and the plugins load on first use.

    >>> import detsdk
    >>> engine = detsdk.Engine.from_recipe("recipe.toml")  # doctest: +SKIP
    >>> engine.fit()                                       # doctest: +SKIP
"""

from __future__ import annotations

from detsdk.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["Engine", "load_detector", "hookimpl", "hookspec", "__version__"]


def __getattr__(name):
    # Engine and load_detector import torch, so they load on first access.
    if name == "Engine":
        from detsdk.engine import Engine

        return Engine
    if name == "load_detector":
        from detsdk.engine.predictor import load_detector

        return load_detector
    raise AttributeError(f"module 'detsdk' has no attribute {name!r}")
