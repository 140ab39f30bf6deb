"""The exceptions provisioner raises, all rooted at :class:`ProvisionerError`.

::

    ProvisionerError
    ├── ConfigError            bad flags, environment or settings
    ├── SpecError              one invalid spec: source, line, field, reason
    ├── SourceError            a job file that cannot be read or parsed at all
    ├── ApiError               the API answered with an error status or a redirect
    │   ├── RetryableApiError  408, 429, 5xx, or a 409 "key still in flight"
    │   ├── AuthError          401 or 403: every further request would fail too
    │   └── ConflictError      409: duplicate name or idempotency key misuse
    ├── TransportError         no usable answer: refused, reset, timed out, a
    │                          failed TLS check, a hostile answer, an endless list
    ├── ResultLogError         the result log cannot be read or written
    │   └── LockedError        another run holds the result log's lock
    └── QueueError             Redis (the queue) refused or could not be reached

This module imports nothing from provisioner, so every other module can use it.
"""

from __future__ import annotations

from typing import Any

#: ``TransportError.error_type`` of a connection that broke without an answer.
CONNECTION_RESET = "connection_reset"


class ProvisionerError(Exception):
    """Root of every error provisioner raises on purpose."""


class ConfigError(ProvisionerError):
    """A setting, flag or environment variable is missing or impossible."""


class SpecError(ProvisionerError):
    """One spec breaks one rule of the create body.

    Attributes:
        source: the job file's name (``-`` for stdin).
        line: 1-based line of the spec in its file, or ``None`` when unknown.
        field: dotted path of the offending field (``config.networking``), or ``""``
            for the spec as a whole.
        reason: what is wrong, as a short phrase.
        column: the CSV column the field's value came from (``B (team)``), or
            ``""`` when the spec was not read from a CSV row.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str = "",
        line: int | None = None,
        field: str = "",
        column: str = "",
    ) -> None:
        super().__init__(reason)
        self.source = source
        self.line = line
        self.field = field
        self.reason = reason
        self.column = column

    def located(self, source: str, line: int | None) -> SpecError:
        """Return a copy of this error placed at ``source:line``."""
        return SpecError(
            self.reason, source=source, line=line, field=self.field, column=self.column
        )

    def in_column(self, column: str) -> SpecError:
        """Return a copy of this error naming the CSV ``column`` its value came from."""
        return SpecError(
            self.reason,
            source=self.source,
            line=self.line,
            field=self.field,
            column=column,
        )

    @property
    def where(self) -> str:
        """``file:line`` (or just ``file``) for messages."""
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}"

    def __str__(self) -> str:
        column = f"column {self.column}" if self.column else ""
        parts = [p for p in (self.where, column, self.field) if p]
        return ": ".join([*parts, self.reason])


class SourceError(ProvisionerError):
    """A job file cannot be opened or is not in a supported format."""

    def __init__(self, reason: str, *, source: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.source = source
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.reason}"


class ApiError(ProvisionerError):
    """The API answered with an error status.

    Attributes:
        status: the HTTP status code.
        error_type: ``error.type`` from the envelope, or ``http_<status>`` when the
            body was empty or not JSON (a gateway answer).
        message: ``error.message``, or a short excerpt of a non-JSON body.
        request_id: the server's request id, when it sent one.
        retry_after_s: the wait the server asked for (``retry-after-ms`` or
            ``Retry-After``), if it asked.
        should_retry: the server's ``x-should-retry`` header, if it sent one.
        is_throttled: the server asks us to wait, not failing (a 429, or a 409
            for a key still being processed): its retry costs no retry budget.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        error_type: str,
        request_id: str | None = None,
        retry_after_s: float | None = None,
        should_retry: bool | None = None,
        is_throttled: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        self.should_retry = should_retry
        self.is_throttled = is_throttled

    def __str__(self) -> str:
        text = f"HTTP {self.status} {self.error_type}: {self.message}"
        if self.request_id:
            text += f" (request_id {self.request_id})"
        return text


class RetryableApiError(ApiError):
    """A transient answer: 408, 429, 5xx, or a 409 for a key still in flight."""


class AuthError(ApiError):
    """401 or 403: the token is missing, wrong or lacks rights. Stops a run."""


class ConflictError(ApiError):
    """A 409 that retrying will not fix.

    Attributes:
        reason: ``"name"`` (an environment with that name exists) or
            ``"idempotency"`` (the key was used before with another body).
    """

    def __init__(self, message: str, *, reason: str, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.reason = reason


class TransportError(ProvisionerError):
    """No usable answer arrived, or the answer could not be believed.

    Attributes:
        is_ambiguous: ``True`` when the request may have reached the server, so
            it may have committed (a reset after sending, a read timeout, or a
            create answer that cannot be read).
        error_type: ``timeout``, ``connection_error`` (never connected),
            ``connection_reset``, ``bad_answer`` (malformed, oversized or without
            a valid id), ``tls_error`` (the certificate or handshake failed) or
            ``list_walk_limit`` (a list never ended within its page cap or deadline).
        is_retryable: ``False`` when another attempt cannot help (``tls_error``,
            ``list_walk_limit``); the retry decision honours it.
    """

    def __init__(
        self,
        message: str,
        *,
        is_ambiguous: bool,
        error_type: str = CONNECTION_RESET,
        is_retryable: bool = True,
    ) -> None:
        super().__init__(message)
        self.is_ambiguous = is_ambiguous
        self.error_type = error_type
        self.is_retryable = is_retryable


class ResultLogError(ProvisionerError):
    """The result log cannot be opened, read or written."""


class LockedError(ResultLogError):
    """Another process holds the result log's lock.

    Attributes:
        results_path: the result log.
        holder: what the holder wrote about itself (``pid``, ``host``,
            ``started_at``, ``command``); empty when it could not be read.
    """

    def __init__(self, results_path: str, holder: dict[str, Any]) -> None:
        self.results_path = results_path
        self.holder = holder
        super().__init__(str(self))

    def __str__(self) -> str:
        who = "another process"
        if self.holder:
            who = (
                f"pid {self.holder.get('pid', '?')} on {self.holder.get('host', '?')}, "
                f"started {self.holder.get('started_at', '?')}"
            )
        return (
            f"result log {self.results_path} is locked by another run ({who}); "
            "wait for it to finish, or use another --results file"
        )


class QueueError(ProvisionerError):
    """Redis refused a command, or could not be reached.

    Attributes:
        is_connection: ``True`` when Redis could not be reached (or went away):
            worth waiting for; ``False`` for a refusal (bad password, wrong
            type of key), which waiting will not fix.
    """

    def __init__(self, message: str, *, is_connection: bool) -> None:
        super().__init__(message)
        self.is_connection = is_connection
