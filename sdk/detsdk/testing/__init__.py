"""The conformance kit: check a plugin's components against their kind's contract (DESIGN.md).

``sdk plugins check NAME`` runs it from the command line, the pytest plugin
``detsdk.testing.pytest_plugin`` as parametrised tests. This package imports
no torch until a check runs, so test suites may import ``painted_sample`` cheaply.

>>> from detsdk.testing import check_plugin
>>> report = check_plugin("toy")                                # doctest: +SKIP
>>> print("\\n".join(r.line() for r in report.results))          # doctest: +SKIP
"""

from __future__ import annotations

from detsdk.testing.painted import alignment_problems, default_painted_sample, painted_sample
from detsdk.testing.results import CheckResult, Report

__all__ = ["CheckResult", "Report", "alignment_problems", "check_plugin", "default_painted_sample", "painted_sample"]


def check_plugin(*args, **kwargs) -> Report:
    """``detsdk.testing.runner.check_plugin`` (imported on first use: it needs torch)."""
    from detsdk.testing.runner import check_plugin as run

    return run(*args, **kwargs)
