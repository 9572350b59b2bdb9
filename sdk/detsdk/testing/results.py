"""What a conformance check found: one ``CheckResult`` per check, and their sum for a plugin."""

from __future__ import annotations

from typing import Literal

import attrs

Status = Literal["passed", "failed", "skipped"]
_MARK = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}


@attrs.frozen
class CheckResult:
    """One check of one component: ``component`` is ``kind:qualified_name``, ``finding`` what was seen."""

    component: str
    check: str
    status: Status
    finding: str

    @property
    def failed(self) -> bool:
        """True for a failed check."""
        return self.status == "failed"

    def line(self) -> str:
        """``FAIL  backbone:toy/convnet  strides: ...`` (one line, as ``sdk plugins check`` prints it)."""
        return f"{_MARK[self.status]}  {self.component}  {self.check}: {self.finding}"


def passed(component: str, check: str, finding: str) -> CheckResult:
    """A passed check."""
    return CheckResult(component, check, "passed", finding)


def failed(component: str, check: str, finding: str) -> CheckResult:
    """A failed check."""
    return CheckResult(component, check, "failed", finding)


def skipped(component: str, check: str, finding: str) -> CheckResult:
    """A check that could not run; counted and shown, never silent."""
    return CheckResult(component, check, "skipped", finding)


def verdict(component: str, check: str, problems: list[str], finding: str) -> CheckResult:
    """Failed naming the first problems when there are any, else passed with ``finding``."""
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return failed(component, check, "; ".join(problems[:3]) + more)
    return passed(component, check, finding)


def error_text(exc: BaseException) -> str:
    """``TypeError: first line of the message``, at most 300 characters (a finding, not a traceback)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


@attrs.define
class Report:
    """Every check result of one ``sdk plugins check`` run."""

    plugin: str
    results: list[CheckResult] = attrs.Factory(list)

    def count(self, status: Status) -> int:
        """How many checks ended with ``status``."""
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks are counted, not failures)."""
        return not any(r.failed for r in self.results)

    def summary(self) -> str:
        """``toy: 21 checks, 20 passed, 1 failed, 0 skipped``."""
        return (
            f"{self.plugin}: {len(self.results)} checks, {self.count('passed')} passed, "
            f"{self.count('failed')} failed, {self.count('skipped')} skipped"
        )

    def as_dict(self) -> dict:
        """The report as plain JSON-ready data."""
        return {
            "plugin": self.plugin,
            "ok": self.ok,
            "passed": self.count("passed"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "results": [attrs.asdict(r) for r in self.results],
        }
