"""``sdk plugins``, ``sdk list`` and ``sdk recipe show``: what is installed and what a recipe resolves to."""

from __future__ import annotations

import inspect
import json

import click

from detsdk.cli.options import debug_option
from detsdk.plugins import KINDS, get_registry

KIND_CHOICES = sorted(KINDS.values()) + sorted(KINDS)


@click.group("plugins", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@debug_option
@click.pass_context
def plugins_command(ctx, as_json):
    """Show installed plugins, their hooks, components and errors (``sdk plugins check NAME`` tests one)."""
    if ctx.invoked_subcommand is not None:
        return
    infos = list(get_registry().plugins.values())
    if as_json:
        click.echo(json.dumps([_plugin_dict(i) for i in infos], indent=2))
        return
    rows = [("plugin", "version", "components", "status")]
    for info in infos:
        status = f"error: {info.error}" if info.error else "ok"
        rows.append((info.name, info.version, str(len(info.components)), status))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    for info in infos:
        if info.components:
            click.echo(f"\n{info.name}: {', '.join(info.components)}")


@plugins_command.command("check")
@click.argument("name")
@click.option("--kinds", multiple=True, metavar="KIND[,KIND]", help="Check only these kinds (e.g. backbone,dataset).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="A TOML file with a [tool.detsdk.check] table, instead of the plugin's pyproject.toml.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@debug_option
def plugins_check_command(name, kinds, config_file, as_json):
    """Build every component plugin NAME registers and check it against its kind's contract.

    One line per check (ok / FAIL / skip, component, check, finding); exit code 1 if any check fails.
    """
    from detsdk.testing.config import read_check_file
    from detsdk.testing.runner import check_plugin

    config = read_check_file(config_file) if config_file else None
    report = check_plugin(name, kinds=kinds, config=config)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for result in report.results:
            click.echo(result.line())
        click.echo(report.summary())
    if not report.ok:
        raise SystemExit(1)


def _plugin_dict(info) -> dict:
    return {
        "name": info.name,
        "version": info.version,
        "distribution": info.distribution,
        "hooks": info.hooks,
        "components": info.components,
        "errors": [info.error] if info.error else [],
    }


@click.command("list")
@click.argument("kind", required=False, type=click.Choice(KIND_CHOICES))
@debug_option
def list_command(kind):
    """List components (all kinds, or KIND) with their parameters and defaults."""
    registry = get_registry()
    kinds = [KINDS.get(kind, kind)] if kind else list(KINDS.values())
    for current in kinds:
        click.echo(f"{current}s:")
        for component in registry.components(current):
            click.echo(f"  {component.name}  [{component.qualified_name}]  {component.description}")
            if current == "recipe":
                click.echo(_recipe_listing(component))
            else:
                click.echo(_parameter_listing(component, current))
        click.echo("")


_DETECTOR_KEYS = {
    "backbone": "(required: a backbone table)",
    "neck": "(a neck table; optional)",
    "num_classes": '= "auto"  (the training dataset\'s class count)',
}


def _parameter_listing(component, kind) -> str:
    from detsdk.recipe.schema import ENGINE_BUILT, INJECTED

    from detsdk.errors import DetSDKError

    try:
        parameters = component.parameters()
    except DetSDKError as exc:
        return f"      (cannot load: {exc})"
    lines = []
    for p in parameters:
        if p.name in INJECTED.get(kind, ()):
            continue
        if kind == "detector" and p.name in ENGINE_BUILT:
            default = _DETECTOR_KEYS[p.name]
        elif p.default is inspect.Parameter.empty:
            default = "(required)"
        else:
            default = f"= {toml_value(p.default)}"
        lines.append(f"      {p.name} {default}")
    return "\n".join(lines) if lines else "      (no parameters)"


def toml_value(value) -> str:
    """A default as a recipe would write it (``true``, ``"sgd"``, ``[1, 2]``, ``{ type = "x" }``)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if value is None:
        return '""  (none)'
    return json.dumps(value)


def _recipe_listing(component) -> str:
    from pathlib import Path

    from detsdk.testing.recipes import shipped_recipes

    folder = Path(component.factory)
    names = [str(p.relative_to(folder)) for p in shipped_recipes(folder)]
    return "\n".join(f"      {component.plugin}:{n}" for n in names) or "      (none)"


@click.group("recipe")
def recipe_group():
    """Inspect recipes."""


@recipe_group.command("show")
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key.")
@click.option("--explain", is_flag=True, help="For each key: the file it comes from and the settings it shadows.")
@debug_option
def recipe_show(recipe, overrides, explain):
    """Print RECIPE fully resolved: bases merged, overrides and defaults applied."""
    from detsdk.recipe import dump_recipe, load_recipe, validate_recipe, with_defaults

    loaded = load_recipe(recipe, overrides)
    validate_recipe(loaded)
    if explain:
        from detsdk.recipe.explain import explain_recipe

        click.echo("\n".join(explain_recipe(loaded, with_defaults(loaded.data))))
        return
    click.echo(dump_recipe(with_defaults(loaded.data)), nl=False)


COMMANDS = [plugins_command, list_command, recipe_group]
