"""Errors a user can cause. The CLI prints them on one line and exits 2."""

from __future__ import annotations

from collections.abc import Iterable


class DetSDKError(Exception):
    """A user mistake: bad recipe, bad data, bad command line. Never a bug."""


class RecipeError(DetSDKError):
    """A recipe that cannot be loaded, merged or validated."""


class PluginError(DetSDKError):
    """A component name that is unknown or ambiguous, or a plugin that failed."""


class DataError(DetSDKError):
    """A dataset file or image that cannot be read as expected."""


class CheckpointError(DetSDKError):
    """A checkpoint that is missing, corrupt or unsafe to load."""


class ExportError(DetSDKError):
    """A detector that cannot be exported, or an exported file that does not match its PyTorch model."""


class TrainingError(DetSDKError):
    """Training cannot go on (a NaN or infinite loss, for example)."""


class HookError(DetSDKError):
    """A training hook raised; the message names the hook, its plugin and the event."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the nearest choice, or ``""``."""
    import difflib  # here: every sdk command imports this module, few need a suggestion

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


class DetSDKWarning(UserWarning):
    """Something the user should know that does not stop the run (dropped boxes, skipped weights)."""


def warn(message: str) -> None:
    """Warn once per call site and message; the CLI prints these as one ``warning:`` line."""
    import warnings

    warnings.warn(message, DetSDKWarning, stacklevel=2)
