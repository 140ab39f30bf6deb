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
