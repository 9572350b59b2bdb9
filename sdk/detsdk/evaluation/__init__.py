"""Evaluation building blocks that metrics in the core and in plugins share (``ap``: VOC-style AP)."""
