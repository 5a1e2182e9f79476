"""Errors a user can cause. The CLI turns any EdgekitError into one clean line and exit code 2."""

from __future__ import annotations


class EdgekitError(Exception):
    """Base class: a problem the user can fix (bad input, missing package, unsupported request)."""

    exit_code = 2


class ConfigError(EdgekitError):
    """An option, recipe field or name that is not allowed."""


class DataError(EdgekitError):
    """A dataset, file or array that can't be used as given."""


class ModelError(EdgekitError):
    """A model file that is missing, unreadable, or not the format its name says."""


class MissingDependencyError(EdgekitError):
    """An optional package is not installed. Never installed at run time: say what to install."""

    def __init__(self, package: str, extra: str | None = None, what: str | None = None):
        self.package = package
        self.extra = extra
        hint = f"pip install 'edgekit[{extra}]'" if extra else f"pip install {package}"
        lead = f"{what} needs" if what else "This needs"
        super().__init__(f"{lead} the '{package}' package, which is not installed. Install it with: {hint}")


class UnsupportedError(EdgekitError):
    """A valid request this backend, device or format can't do."""


class VerificationError(EdgekitError):
    """An exported model disagrees with its source beyond tolerance."""


class GateError(EdgekitError):
    """An artifact missed an acceptance gate (accuracy drop, size, latency)."""


class DeployError(EdgekitError):
    """A deployment step failed on the device."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (or its type name): third-party errors are long."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def allowed(received, options, what: str = "value") -> str:
    """Format the standard message: what was received and what is allowed."""
    opts = ", ".join(str(o) for o in options) if options else "(none)"
    return f"Unknown {what} {received!r}. Available: {opts}"
