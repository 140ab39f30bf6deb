"""Frozen settings, built once at the edge (``cli.py``) and passed explicitly.

Defaults live here and only here; the README's tables mirror them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from provisioner.errors import ConfigError

DEFAULT_API_URL = "https://openapi.qoder.sh/api/v1/cloud"
TOKEN_ENV = "QODER_PAT"  # noqa: S105 - the variable's name, not a token
API_URL_ENVS = ("QODER_API_URL", "QODER_BASE_URL")


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Where and how to reach the Environments API.

    Attributes:
        base_url: API base, e.g. ``https://api.qoder.com/api/v1/cloud``.
        token: the personal access token (``QODER_PAT``); shown as ``'***'``.
        timeout_s: per-request total timeout in seconds.
    """

    token: Secret
    base_url: str = DEFAULT_API_URL
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"API URL must start with http:// or https://: {self.base_url!r}"
            )
        if self.timeout_s <= 0:
            raise ConfigError(f"--timeout must be positive, got {self.timeout_s}")
        if self.base_url.startswith("http://") and not _is_loopback(self.base_url):
            warnings.warn(
                "the API URL is plain http: the token will cross the network unencrypted",
                stacklevel=2,
            )

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        api_url: str | None = None,
        token_file: str | None = None,
        timeout_s: float = 30.0,
    ) -> ApiSettings:
        """Build from flags and the environment: the token from a file or ``QODER_PAT``.

        Raises:
            ConfigError: no token, an unreadable token file, or a bad URL.
        """
        url = api_url or next((env[k] for k in API_URL_ENVS if env.get(k)), None)
        return cls(
            token=read_token(env, token_file),
            base_url=(url or DEFAULT_API_URL).rstrip("/"),
            timeout_s=timeout_s,
        )


def read_token(env: Mapping[str, str], token_file: str | None) -> Secret:
    """The token from ``token_file`` if given, else from ``QODER_PAT``."""
    if token_file:
        try:
            value = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read token file {token_file}: {exc.strerror}"
            ) from exc
        if not value:
            raise ConfigError(f"token file {token_file} is empty")
        return Secret(value)
    value = env.get(TOKEN_ENV, "").strip()
    if not value:
        raise ConfigError(
            f"no API token: set {TOKEN_ENV} or pass --token-file (or use --sandbox)"
        )
    return Secret(value)


def _is_loopback(url: str) -> bool:
    host = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
    return host in {"localhost", "[::1]"} or host.startswith("127.")


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How a bulk run behaves.

    Attributes:
        concurrency: requests in flight at most.
        rate_per_s: requests per second at most; 0 means unlimited.
        results_path: the result log (JSON Lines); ``-`` for stdout.
        summary_path: where to write the summary as JSON, if anywhere.
        on_conflict: ``exists`` records a name conflict as ``exists``; ``fail`` as failed.
        skip_invalid: record invalid specs as ``invalid`` and go on, instead of refusing.
        resume: skip specs the result log already has as ``created`` or ``exists``.
        retry_failed: on resume, try again the specs the log has as ``failed``.
        grace_s: on SIGINT/SIGTERM, how long requests in flight may finish.
    """

    concurrency: int = 8
    rate_per_s: float = 20.0
    results_path: str = "results.jsonl"
    summary_path: str | None = None
    on_conflict: Literal["exists", "fail"] = "exists"
    skip_invalid: bool = False
    resume: bool = True
    retry_failed: bool = True
    grace_s: float = 30.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(
                f"--concurrency must be at least 1, got {self.concurrency}"
            )
        if self.rate_per_s < 0:
            raise ConfigError(
                f"--rate must be 0 (unlimited) or more, got {self.rate_per_s}"
            )
        if self.grace_s < 0:
            raise ConfigError(f"--grace must be 0 or more, got {self.grace_s}")
        if self.concurrency > 256:  # noqa: PLR2004 - a politeness threshold, documented
            warnings.warn(
                f"--concurrency {self.concurrency} is far above what the API recommends",
                stacklevel=2,
            )

    @property
    def is_stdout_results(self) -> bool:
        """Whether the result log goes to stdout (no resume possible)."""
        return self.results_path == "-"
