"""Secrets are masked and control characters made visible in every text that leaves the process."""

from __future__ import annotations

import pytest

from provisioner.redact import Scrubber, printable

TOKEN = "pt-canary-0123456789abcdef"


@pytest.mark.parametrize(
    "text",
    [
        f"bad header Authorization: Bearer {TOKEN}",
        f"echo: {{'Authorization': 'Bearer {TOKEN}'}}",
        f"authorization={TOKEN}; retry",
        f"token {TOKEN} rejected",
        f"Bearer {TOKEN}",
    ],
)
def test_the_token_is_masked_wherever_it_appears(text):
    """The known token never survives scrubbing, whatever surrounds it."""
    assert TOKEN not in Scrubber([TOKEN])(text)


def test_an_unknown_bearer_value_is_masked_too():
    """A credential the process never knew (another header echoed back) is masked by its shape."""
    scrubbed = Scrubber()("proxy said: Authorization: Bearer sk-someone-elses-1234567")
    assert "sk-someone" not in scrubbed
    assert "Authorization: ***" in scrubbed


def test_ordinary_text_is_left_alone():
    """Error messages without credentials are stored exactly as the server wrote them."""
    text = "HTTP 400 invalid_request_error: config.networking: expected an object"
    assert Scrubber([TOKEN])(text) == text


def test_control_and_bidi_characters_are_shown_as_escapes():
    """A name with an escape sequence or a right-to-left override prints as visible escapes."""
    assert (
        printable("team-\x1b[31mred\u202eevil\n") == "team-\\x1b[31mred\\u202eevil\\x0a"
    )
    assert printable("plain name") == "plain name"


PROSE = (
    "Basic environment for payments; the bearer of this key asks for a token budget. "
    "Basic setup, Bearer notes, token: expired, key: owner, see https://docs.example/a:b"
)


def test_prose_about_credentials_is_left_alone():
    """Words such as basic, bearer, token and key in a message are not masked."""
    assert Scrubber([TOKEN])(PROSE) == PROSE
    error = "HTTP 400 invalid_request_error: Basic environment for payments: name taken"
    assert Scrubber([TOKEN])(error) == error


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "Authorization: ***"),
        ("header: Basic YWxhZGRpbjpvcGVuc2VzYW1l", "YWxhZGRpbjpv", "Basic ***"),
        ("sent Bearer sk-live-4f9a8b7c6d5e", "sk-live-4f9a", "Bearer ***"),
        ("Authorization: Bearer abc", "abc", "Authorization: ***"),
        ("GET /x?token=abc&page=2", "abc", "token=***&page=2"),
        ('{"token":"short"}', "short", '"token":"***"'),
        ("token: 9f8e7d6c5b4a3210", "9f8e7d6c5b4a", "token: ***"),
        ("api_key: hunter", "hunter", "api_key: ***"),
        ("X-Api-Key: sesame", "sesame", "X-Api-Key: ***"),
        ('{"access_token": "opensesame"}', "opensesame", '"access_token": "***"'),
        ("password=letmein", "letmein", "password=***"),
        (
            "proxy http://alice:s3cr3t@proxy.example:3128 refused",
            "s3cr3t",
            "http://alice:***@proxy.example:3128",
        ),
        ("redis://:p@ss@redis.example/0", "p@ss", "redis://:***@redis.example/0"),
        (f"echoed {TOKEN[3:]}{TOKEN}x", TOKEN, "echoed"),
    ],
)
def test_every_credential_shape_is_masked(text, secret, kept):
    """Credentials in headers, query strings, fields and URLs are masked; their labels stay."""
    scrubbed = Scrubber([TOKEN])(text)
    assert secret not in scrubbed
    assert kept in scrubbed
