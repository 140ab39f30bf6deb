"""Text that leaves the process: secrets masked, control characters made visible.

Every string provisioner stores or prints (result records, summaries, error
lines, log events) passes through a :class:`Scrubber`: it masks the token it was
given and, as a second line of defence, anything shaped like an
``Authorization`` value or a bearer token, even one the process was never told
about (a server that echoes another header back, say).

:func:`printable` is for text bound for a terminal: control characters and
bidirectional overrides (which can make a name read as another) are shown as
escapes instead of being acted on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

# "Authorization: Bearer x", "authorization=x", "'Authorization': 'x'", "Bearer x",
# "Basic x": the scheme and credential are masked, the label is kept.
_AUTH_VALUE = re.compile(
    r"""(?ix)
    (?P<label>\b(?:proxy-)?authorization\b["']?\s*[:=]\s*["']?)
        (?:(?:bearer|basic|token)\s+)?[^\s"',;}\]]+
    | (?P<scheme>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}
    """
)

# C0 and C1 controls (tab and newline included: a record or error is one line),
# DEL, and the bidirectional embeddings, overrides and isolates.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class Scrubber:
    """Masks known secrets and anything shaped like a credential.

    Args:
        secrets: exact strings to mask wherever they appear (the token).
    """

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        """``text`` with every secret and credential-shaped value replaced by ``***``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if "uth" in text or "earer" in text or "asic" in text:
            text = _AUTH_VALUE.sub(_mask_match, text)
        return text


def split_userinfo(url: str) -> tuple[str, str, str] | None:
    """``scheme://userinfo@rest`` as ``(scheme, userinfo, rest)``; ``None`` without userinfo.

    The userinfo ends at the authority's last ``@`` (a password may hold one).
    """
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if not sep or "@" not in authority:
        return None
    userinfo, _, host = authority.rpartition("@")
    return scheme, userinfo, host + slash + path


def redacted_url(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***`` (for messages)."""
    parts = split_userinfo(url)
    if parts is None:
        return url
    scheme, userinfo, rest = parts
    user = userinfo.split(":", 1)[0]
    return (
        f"{scheme}://{user}:{MASK}@{rest}"
        if ":" in userinfo
        else f"{scheme}://{MASK}@{rest}"
    )


def without_password(url: str) -> str:
    """``url`` without the password of its user info; the user name stays."""
    parts = split_userinfo(url)
    if parts is None:
        return url
    scheme, userinfo, rest = parts
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user + '@' if user else ''}{rest}"


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


def _mask_match(match: re.Match[str]) -> str:
    return (match.group("label") or match.group("scheme")) + MASK


def printable(text: str) -> str:
    """``text`` with control and bidi characters written as escapes (``\\x1b``, ``\\u202e``)."""
    if not _UNPRINTABLE.search(text):
        return text
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"  # noqa: PLR2004 - one byte or two


__all__ = [
    "MASK",
    "Scrubber",
    "Secret",
    "printable",
    "redacted_url",
    "split_userinfo",
    "without_password",
]
