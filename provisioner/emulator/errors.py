"""The one error the emulator's handlers raise: it renders as the API's error envelope.

ApiError(status, error_type, message, param)
"""

from __future__ import annotations


class ApiError(Exception):
    """An application answer that is an error: ``status`` plus the envelope's fields."""

    def __init__(
        self, status: int, error_type: str, message: str, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.param = param


def invalid(param: str | None, reason: str) -> ApiError:
    """A 400 ``invalid_request_error`` whose message starts with the field path."""
    message = f"{param}: {reason}" if param else reason
    return ApiError(400, "invalid_request_error", message, param)


def not_found(env_id: str) -> ApiError:
    """A 404 ``not_found_error`` for an unknown environment id."""
    return ApiError(404, "not_found_error", f"Environment {env_id} not found")


def conflict(message: str, param: str | None = None) -> ApiError:
    """A 409 ``conflict_error``."""
    return ApiError(409, "conflict_error", message, param)
