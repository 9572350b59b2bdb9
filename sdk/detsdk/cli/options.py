"""Options shared by several commands."""

from __future__ import annotations

import click


def debug_option(function):
    """``--debug`` on a subcommand, same as ``sdk --debug``."""

    def turn_on(ctx, _param, value):
        if value:
            ctx.ensure_object(dict)["debug"] = True

    return click.option("--debug", is_flag=True, expose_value=False, callback=turn_on, help="Show tracebacks.")(function)
