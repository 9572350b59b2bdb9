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


def load_detector(path, device: str | None = None):
    """A ``Detector`` for a checkpoint (``.pt``, PyTorch) or an export: ``.onnx`` (ONNX Runtime) or ``.xml`` (OpenVINO).

    Exports run without importing torch.

    Both predict alike: ``load_detector(path).predict(image)`` gives boxes, scores,
    labels, class names (and masks) in the image's own pixels.
    """
    if str(path).lower().endswith(".onnx"):
        from detsdk.export.runtime import load_onnx_detector

        return load_onnx_detector(path, device=device)
    if str(path).lower().endswith(".xml"):
        from detsdk.export.openvino_runtime import load_openvino_detector

        return load_openvino_detector(path, device=device)
    from detsdk.engine.predictor import load_detector as load_checkpoint_detector

    return load_checkpoint_detector(path, device=device)


def __getattr__(name):
    # Engine imports torch, so it loads on first access.
    if name == "Engine":
        from detsdk.engine import Engine

        return Engine
    raise AttributeError(f"module 'detsdk' has no attribute {name!r}")
