"""The conformance kit as a pytest plugin: every component of a plugin as a parametrised test.

Enable it with ``pytest -p detsdk.testing.pytest_plugin`` (or
``pytest_plugins = ["detsdk.testing.pytest_plugin"]`` in a ``conftest.py``),
name the plugin(s) with ``--detsdk-plugin NAME`` or the ``detsdk_plugins`` ini
option, and collect the ready-made test::

    # tests/test_conformance.py
    from detsdk.testing.pytest_plugin import test_component_conforms  # noqa: F401

Fixtures:

- ``detsdk_component``: one registered component (``detsdk.plugins.Component``)
  of the named plugins per test; tests using it are parametrised with ids
  like ``backbone:toy/toy_convnet``.
- ``painted_sample``: a fresh painted sample (four solid-colour objects with
  boxes, labels and masks on a 96x128 image) for an author's own transform tests;
  ``detsdk.testing.alignment_problems(before, after)`` says what a transform broke.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from detsdk.testing.painted import default_painted_sample


def pytest_addoption(parser):
    """``--detsdk-plugin NAME`` (repeatable) and the ``detsdk_plugins`` ini option."""
    group = parser.getgroup("detsdk", "det-sdk conformance kit")
    group.addoption("--detsdk-plugin", action="append", default=[], metavar="NAME",
                    help="Check every component of this det-sdk plugin (repeatable).")
    parser.addini("detsdk_plugins", "det-sdk plugins whose components detsdk_component runs over", type="args")


def pytest_generate_tests(metafunc):
    """Parametrise tests that use ``detsdk_component`` over every component of the named plugins."""
    if "detsdk_component" not in metafunc.fixturenames:
        return
    from detsdk.plugins import get_registry

    plugins = metafunc.config.getoption("detsdk_plugin") or metafunc.config.getini("detsdk_plugins")
    registry = get_registry()
    ids = []
    for plugin in plugins:
        if plugin not in registry.plugins:
            raise pytest.UsageError(f"--detsdk-plugin {plugin}: no such plugin is loaded ({', '.join(registry.plugins)})")
        ids += [f"{c.kind}:{c.qualified_name}" for kind in _kinds() for c in registry.components(kind) if c.plugin == plugin]
    metafunc.parametrize("detsdk_component", ids, ids=ids, indirect=True)


@pytest.fixture
def detsdk_component(request):
    """The registered component this test runs for (``kind:plugin/name`` in the test id)."""
    from detsdk.plugins import get_registry

    kind, _, name = request.param.partition(":")
    return get_registry().get(kind, name)


@pytest.fixture(name="painted_sample")
def painted_sample_fixture() -> dict:
    """A fresh painted sample: four solid-colour objects with boxes, labels and masks on a 96x128 image."""
    return default_painted_sample()


def assert_conforms(component) -> None:
    """Run the kit's checks of ``component``: fail naming every failed check, skip when no check could run."""
    from detsdk.plugins import get_registry
    from detsdk.testing.config import plugin_check_config
    from detsdk.testing.runner import check_component

    registry = get_registry()
    module = registry.plugin_manager.get_plugin(component.plugin)
    config = plugin_check_config(component.plugin, getattr(module, "__file__", None))
    with tempfile.TemporaryDirectory(prefix="detsdk-check-") as folder:
        results = check_component(component, config, Path(folder), registry)
    failures = [r.line() for r in results if r.failed]
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    if all(r.status == "skipped" for r in results):
        pytest.skip("; ".join(r.finding for r in results))


def test_component_conforms(detsdk_component):
    """Every check of the component's kind passes (import this test into a test module to collect it)."""
    assert_conforms(detsdk_component)


def _kinds() -> list[str]:
    from detsdk.plugins.registry import KINDS

    return list(KINDS.values())
