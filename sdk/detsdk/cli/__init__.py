"""The ``sdk`` command line."""

from detsdk.cli.main import cli, main

__all__ = ["cli", "main"]
