"""``sdk data``: look at, check and convert datasets (MMDetection's dataset tools)."""

from __future__ import annotations

import click


@click.group("data")
def data_group():
    """Check, browse, summarise and convert the datasets a recipe names."""


COMMANDS = [data_group]
