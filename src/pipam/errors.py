"""Typed errors carrying the wire format's error type and HTTP status."""

from __future__ import annotations


class PipamError(Exception):
    """Base of every error a client or operator may see. ``type`` is the NeutronError type."""

    status: int = 500
    type: str = "PipamError"

    def __init__(self, message: str, *, type: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if type is not None:
            self.type = type
        if status is not None:
            self.status = status


class BadRequest(PipamError):
    status = 400
    type = "BadRequest"


class InvalidInput(BadRequest):
    type = "InvalidInput"


class NotFound(PipamError):
    status = 404
    type = "NotFound"


class Conflict(PipamError):
    status = 409
    type = "Conflict"


class ServiceUnavailable(PipamError):
    """The request may succeed later; ``retry_after`` seconds is the hint given to clients."""

    status = 503
    type = "ServiceUnavailable"

    def __init__(self, message: str, *, type: str | None = None, retry_after: int = 5) -> None:
        super().__init__(message, type=type)
        self.retry_after = retry_after


class RetryTransaction(Exception):
    """Internal: a compare-and-swap lost too many races; the whole transaction should run again."""
