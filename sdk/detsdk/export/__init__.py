"""Deployment: ONNX (and OpenVINO) export of any detector, runtime detectors that need no torch, benchmarks.

Modules that import torch (``graph``, ``exporter``, ``benchmark``) are never imported
by the torch-free ones (``pipeline``, ``metadata``, ``verify``, ``runtime``,
``openvino_runtime``), so ``detsdk.load_detector("model.onnx")`` runs without PyTorch.
"""
