"""``sdk plot``: training curves from ``log.jsonl`` files (MMDetection's ``analyze_logs.py plot_curve``)."""

from __future__ import annotations

from pathlib import Path

import click

from detsdk.cli.options import debug_option

MULTI_VALUE_OPTIONS = ("--keys", "--legend")


class _MultiValueCommand(click.Command):
    """Lets ``--keys a b c`` stand for ``--keys a --keys b --keys c`` (as argparse's ``nargs='+'``)."""

    def parse_args(self, ctx, args):
        expanded, option = [], None
        for arg in args:
            if arg in MULTI_VALUE_OPTIONS:
                option = arg
                continue
            if arg.startswith("-"):
                option = None
            elif option is not None:
                expanded.append(option)
            expanded.append(arg)
        return super().parse_args(ctx, expanded)


@click.command("plot", cls=_MultiValueCommand)
@click.argument("logs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--keys", multiple=True, metavar="KEY...", default=("loss",), show_default=True,
              help="Keys to plot, one panel each: loss terms, lr, time, metrics (bbox_mAP, ...).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("curves.png"),
              show_default=True, help="The figure to write (.png, .pdf, .svg).")
@click.option("--legend", multiple=True, metavar="LABEL...", help="One label per log (default: the run's folder).")
@click.option("--title", default="", help="A title for the figure.")
@debug_option
def plot_command(logs, keys, out, legend, title):
    """Plot KEYS of one or more LOGS (log.jsonl) against the iteration, runs compared on one figure.

    \b
    sdk plot runs/a/log.jsonl --keys loss bbox_mAP --out curves.png
    sdk plot runs/a/log.jsonl runs/b/log.jsonl --keys loss --legend baseline ema
    """
    from detsdk.engine.log_curves import plot_logs

    written = plot_logs(list(logs), list(keys), out, labels=list(legend) or None, title=title)
    click.echo(f"wrote {written}")


COMMANDS = [plot_command]
