"""Domain errors raised by services; the app maps each to an HTTP status (see ``cloud.errors``)."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses; ``field`` names the input at fault."""

    status_code = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class Forbidden(ServiceError):
    status_code = 403


class PayloadTooLarge(ServiceError):
    status_code = 413


class UnsupportedEncoding(ServiceError):
    status_code = 415


class BadRequest(ServiceError):
    status_code = 400


class InvalidParameter(ServiceError):
    """A parameter that is well-formed alone but not with the others (``to`` before ``from``)."""

    status_code = 422
