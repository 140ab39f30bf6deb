"""Text that leaves the process: secrets masked, control characters made visible.

Every string provisioner stores or prints (result records, summaries, error
lines, log events) passes through a :class:`Scrubber`: it masks the token it was
given and, as a second line of defence, anything shaped like a credential, even
one the process was never told about (a server that echoes another header back,
say): an ``Authorization`` value, a ``Bearer``/``Basic`` credential, the value of
``token=``, ``api_key:`` or ``password=``, the password in ``scheme://user:pw@``.
Words are left alone: "Basic environment for payments" is prose, not a credential.

:func:`printable` is for text bound for a terminal: control characters and
bidirectional overrides (which can make a name read as another) are shown as
escapes instead of being acted on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

# Where a credential sits: after an ``Authorization`` label (its scheme kept), after a
# key-shaped label (``token=``, ``"api_key": ``, ``X-Api-Key:``), after a bare
# ``Bearer``/``Basic`` scheme, or as the password of a URL's user info. Whether the
# value is masked is then decided by :func:`_mask_match` from the label and the value:
# "Basic environment for payments" is prose, "Basic dXNlcjpwYXNz" is not.
_AUTH_VALUE = re.compile(
    r"""(?ix)
    (?P<label>\b(?:proxy-)?authorization\b["']?\s*[:=]\s*["']?)
        (?P<scheme>(?:bearer|basic|token|digest)\s+)?(?P<value>[^\s"',;&}\]]+)
    | (?P<key>(?:token|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key
              |secret|passw(?:or)?d))
        (?P<sep>["']?\s*[:=]\s*["']?)(?P<keyvalue>[^\s"',;&}\]]+)
    | (?P<bare>\b(?:bearer|basic)\s+)(?P<bvalue>[A-Za-z0-9._~+/=-]{8,})
    | (?P<url>\b[a-z][a-z0-9+.-]*://[^\s/@:]*:)(?P<password>[^\s/]+)(?=@)
    """
)
# Plain words that name a credential in prose ("the token: expired") as well as in
# ``token=...``: after one of them only a value with no space before it, or one shaped
# like a credential, is masked.
_PROSE_KEYS = frozenset({"token", "secret"})
# A cheap first look: most text holds none of these, and is returned as it is.
_HINTS = ("auth", "bearer", "basic", "token", "key", "secret", "passw", "@")
_MIN_CREDENTIAL = 8

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
        lowered = text.lower()
        if not any(hint in lowered for hint in _HINTS):
            return text
        return _AUTH_VALUE.sub(_mask_match, text)


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
    """The match with its credential replaced by ``***``, or unchanged if it is a word."""
    text = match.group()
    if match.group("label") is not None:
        # The label is kept; the scheme goes with the credential, as before.
        return match.group("label") + MASK if _masked_auth(match) else text
    if match.group("key") is not None:
        head = match.group("key") + match.group("sep")
        return head + MASK if _masked_key(match) else text
    if match.group("bare") is not None:
        masked = looks_like_credential(match.group("bvalue"))
        return match.group("bare") + MASK if masked else text
    return match.group("url") + MASK


def _masked_auth(match: re.Match[str]) -> bool:
    # "Authorization: Bearer x" is a credential whatever x is; "authorization: failed" is not.
    return bool(match.group("scheme")) or looks_like_credential(match.group("value"))


def _masked_key(match: re.Match[str]) -> bool:
    key = match.group("key").lower()
    before = match.string[match.start() - 1 : match.start()]
    # api_key, X-Api-Key, password, access_token, mytoken: a field's name, not a word.
    if key not in _PROSE_KEYS or before.isalnum() or before in {"_", "-"}:
        return True
    # "token=x" and '"token":"x"' are fields; "the token: expired" is a sentence.
    tight = not any(c.isspace() for c in match.group("sep"))
    return tight or looks_like_credential(match.group("keyvalue"))


def looks_like_credential(value: str) -> bool:
    """Whether ``value`` is shaped like a secret rather than a word.

    At least 8 characters, and a digit, ``=`` padding, or a capital letter after a
    small one (base64 and random tokens have them; "environment" and "Payments" do not).
    """
    if len(value) < _MIN_CREDENTIAL:
        return False
    return (
        any(c.isdigit() for c in value)
        or value.endswith("=")
        or re.search(r"[a-z][A-Z]", value) is not None
    )


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
