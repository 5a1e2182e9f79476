"""Errors that carry an HTTP status. All are EdgekitError, so library callers can catch one family."""

from __future__ import annotations

from ..errors import DataError, EdgekitError

# The scope key where the connection guard leaves (status, reason) when it answered a request itself.
REFUSED = "edgekit.refused"


class RequestError(DataError):
    """A request the client must fix (400 unless a subclass says otherwise)."""

    status = 400
    reason = "bad_request"


class NotFound(RequestError):
    status = 404
    reason = "not_found"


class MethodNotAllowed(RequestError):
    status = 405
    reason = "method_not_allowed"


class TooLarge(RequestError):
    status = 413
    reason = "too_large"


class NotRepresentable(RequestError):
    """A result JSON can't carry (NaN or Infinity in a JSON-encoded output)."""

    status = 422
    reason = "not_representable"


class UnsupportedMedia(RequestError):
    status = 415
    reason = "unsupported_media"


class Overloaded(EdgekitError):
    """The queue is full: answer at once rather than grow memory."""

    status = 503
    reason = "overload"


class Timeout(EdgekitError):
    status = 504
    reason = "timeout"


class Unavailable(EdgekitError):
    """The server can't do this here (e.g. the audio front-end is not installed)."""

    status = 501
    reason = "unavailable"


class ShuttingDown(EdgekitError):
    status = 503
    reason = "shutting_down"


def refused(status: int, reason: str, msg: str) -> EdgekitError:
    """The error for a request the connection guard already answered (header/body deadline, shutdown)."""
    e = RequestError(msg) if status < 500 else EdgekitError(msg)
    e.status, e.reason = status, reason
    return e
