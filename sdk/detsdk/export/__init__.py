"""Deployment: ONNX export of any detector, an ONNX Runtime ``Detector`` that needs no torch, benchmarks.

Modules that import torch (``graph``, ``exporter``, ``verify``, ``benchmark``) are never
imported by the torch-free ones (``pipeline``, ``metadata``, ``runtime``), so
``detsdk.load_detector("model.onnx")`` runs without PyTorch installed.
"""
