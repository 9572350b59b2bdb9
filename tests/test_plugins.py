"""Plugin discovery: built-ins first, entry points lazily, failures isolated, clashes named."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from detsdk.errors import PluginError
from detsdk.plugins import Registry, get_registry


def fake_distribution(site, name, version, module_source, distribution=None):
    """A minimal installed distribution (dist-info + module) exposing a ``detsdk`` entry point ``name``."""
    distribution = distribution or name
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[detsdk]\n{name} = {name}\n")
    return site


CLASHING = """
    from detsdk import hookimpl

    @hookimpl
    def detsdk_register_backbones(register):
        register("resnet", "torchvision.models:resnet18", description="a second resnet")
        register("tiny", "torchvision.models:resnet18")

    @hookimpl
    def detsdk_register_commands(cli):
        import click

        @cli.command("hello")
        def hello():
            click.echo("hello from a plugin")
"""


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    fake_distribution(site, "clashing", "1.2", CLASHING, distribution="det-plugin-clashing")
    fake_distribution(site, "broken", "0.1", "import nonexistent_module_xyz\n")
    fake_distribution(site, "typo", "0.3", "from detsdk import hookimpl\n\n@hookimpl\ndef detsdk_register_backbone(register):\n    pass\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("DETSDK_LOAD_PLUGINS")
    return site


def test_builtins_register_every_design_name():
    registry = get_registry()
    names = {kind: {c.name for c in registry.components(kind)} for kind in ("backbone", "detector", "transform")}
    assert "resnet" in names["backbone"] and "faster_rcnn" in names["detector"]
    assert {"resize", "random_flip", "photometric_distortion", "normalize", "pad"} <= names["transform"]
    assert {c.name for c in registry.components("scheduler")} == {"step", "cosine", "poly", "constant"}


def test_qualified_names_resolve():
    assert get_registry().get("backbone", "detsdk/resnet").plugin == "detsdk"


def test_unknown_qualified_name_suggests():
    with pytest.raises(PluginError, match="did you mean 'detsdk/resnet'"):
        get_registry().get("backbone", "detsdk/resnte")


def test_entry_point_plugins_load_and_a_broken_one_is_isolated(plugin_site, capsys):
    registry = Registry()
    assert registry.plugins["clashing"].version == "1.2"
    assert "backbone:tiny" in registry.plugins["clashing"].components
    assert "nonexistent_module_xyz" in registry.plugins["broken"].error
    warning = capsys.readouterr().err
    assert "warning: plugin 'broken' failed to load" in warning and len(warning.strip().splitlines()) == 2


def test_a_misspelled_hook_is_caught_as_a_plugin_error(plugin_site):
    assert "detsdk_register_backbone" in Registry().plugins["typo"].error


def test_a_clash_is_reported_only_when_the_short_name_is_used(plugin_site):
    registry = Registry()
    assert registry.get("backbone", "tiny").plugin == "clashing"
    assert registry.get("backbone", "clashing/resnet").description == "a second resnet"
    with pytest.raises(PluginError, match=r"detsdk/resnet \(det-sdk 0.1.0\), clashing/resnet \(det-plugin-clashing 1.2\)"):
        registry.get("backbone", "resnet")


def test_plugins_know_the_distribution_pip_installed_them_from(plugin_site):
    registry = Registry()
    assert registry.installed_as("clashing") == "det-plugin-clashing 1.2"
    assert registry.installed_as("detsdk").startswith("det-sdk ")


def test_load_plugins_env_selects_plugins(plugin_site, monkeypatch):
    monkeypatch.setenv("DETSDK_LOAD_PLUGINS", "clashing")
    assert set(Registry().plugins) == {"detsdk", "clashing"}
    monkeypatch.setenv("DETSDK_LOAD_PLUGINS", "")
    assert set(Registry().plugins) == {"detsdk"}


def test_strict_mode_turns_a_broken_plugin_into_an_error(plugin_site, monkeypatch):
    monkeypatch.setenv("DETSDK_STRICT_PLUGINS", "1")
    # Only one broken plugin: which of two fails first follows entry-point order, which imports (mlflow) may change.
    monkeypatch.setenv("DETSDK_LOAD_PLUGINS", "clashing,broken")
    with pytest.raises(PluginError, match="plugin 'broken' failed to load"):
        Registry()


def test_cli_keeps_working_beside_a_broken_plugin_and_adds_plugin_commands(plugin_site, run_sdk):
    env = {"PYTHONPATH": str(plugin_site), "DETSDK_LOAD_PLUGINS": "clashing,broken"}
    code, out, err = run_sdk("hello", env=env)
    assert (code, out.strip()) == (0, "hello from a plugin")
    assert "plugin 'broken' failed to load" in err
    code, out, _ = run_sdk("plugins", "--json", env=env)
    listed = {p["name"]: p for p in json.loads(out)}
    assert code == 0 and listed["broken"]["errors"] and not listed["detsdk"]["errors"]
    assert {"name", "version", "hooks", "components", "errors"} <= listed["clashing"].keys()
    assert "detsdk_register_commands" in listed["clashing"]["hooks"]


def test_a_recipe_naming_a_clashing_component_exits_2_naming_both(plugin_site, run_sdk, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[model]\ntype = "faster_rcnn"\nbackbone = { type = "resnet" }\n')
    code, out, err = run_sdk("recipe", "show", recipe, env={"PYTHONPATH": str(plugin_site), "DETSDK_LOAD_PLUGINS": "clashing"})
    assert code == 2 and "Traceback" not in err
    assert "detsdk/resnet (det-sdk " in err and "clashing/resnet (det-plugin-clashing 1.2)" in err


HEAVY = {"numpy", "torch", "torchvision", "cv2", "scipy", "PIL", "pycocotools", "matplotlib"}
STARTUP_PROBE = f"""
import sys
from detsdk.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("heavy=" + ",".join(sorted({{m.partition(".")[0] for m in sys.modules}} & {HEAVY!r})))
"""


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "--json"]])
def test_help_and_plugin_listing_import_no_numpy_or_torch_with_the_three_plugins(args, monkeypatch):
    import subprocess

    monkeypatch.setenv("DETSDK_LOAD_PLUGINS", "cityscapes,voc,widerface")
    monkeypatch.setenv("DETSDK_STRICT_PLUGINS", "1")
    result = subprocess.run([sys.executable, "-c", STARTUP_PROBE, *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    *output, last = result.stdout.strip().splitlines()
    assert last == "heavy="
    if args == ["--help"]:
        assert any(line.split()[:1] == ["cityscapes"] for line in output)  # a plugin's command is listed
    else:
        assert {"cityscapes", "voc", "widerface"} <= set("\n".join(output).replace('"', " ").split())


def test_sdk_list_shows_parameters_and_defaults(run_sdk):
    code, out, _ = run_sdk("list", "backbone")
    assert code == 0
    assert "resnet" in out and "depth = 50" in out
