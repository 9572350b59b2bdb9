"""``sdk``: the root click group, error handling and plugin commands.

User mistakes (``DetSDKError``) print one line and exit 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import sys
import warnings

import click

from detsdk import __version__
from detsdk.errors import DetSDKError

_default_format_warning = warnings.formatwarning


class SDKGroup(click.Group):
    """A click group that turns user errors into one line and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DetSDKError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {one_line(exc)}", err=True)
            ctx.exit(2)


def one_line(exc: DetSDKError) -> str:
    """The error's own message, also when a DataLoader worker wrapped it with the worker's traceback."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if last.startswith(("detsdk.", type(exc).__name__)) else last
    return text.replace("\n", " ")


@click.group(cls=SDKGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="det-sdk")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx, debug):
    """det-sdk: train, evaluate and use object detectors from data-only recipes."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _add_plugin_commands() -> None:
    """Let plugins add commands (plugin modules must not import torch at import time)."""
    from detsdk.plugins import get_registry

    try:
        get_registry().call_hook("detsdk_register_commands", cli=cli)
    except DetSDKError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _format_warning(message, category, filename, lineno, line=None):
    from detsdk.errors import DetSDKWarning

    if issubclass(category, DetSDKWarning):
        return f"warning: {message}\n"
    return _default_format_warning(message, category, filename, lineno, line)


def main(argv=None) -> None:
    """Entry point of ``sdk`` and ``python -m detsdk``."""
    warnings.formatwarning = _format_warning
    _add_plugin_commands()
    cli.main(args=argv, prog_name="sdk")


from detsdk.cli import analysis_commands, convert_commands, data_commands, export_commands, info_commands, plot_commands, run_commands  # noqa: E402  (commands need ``cli`` defined first)

for _module in (info_commands, run_commands, convert_commands, data_commands, plot_commands, analysis_commands,
                export_commands):
    for _command in _module.COMMANDS:
        cli.add_command(_command)
