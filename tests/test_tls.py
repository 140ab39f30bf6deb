"""Transport security: TLS is always verified, and plain http is never a quiet default."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from provisioner.api.client import ApiClient, open_session
from provisioner.emulator import Emulator, EmulatorConfig
from provisioner.errors import ConfigError, TransportError
from provisioner.pacing.retry import NO_RETRY, RetryBudget, RetryPolicy, decide
from provisioner.redact import Secret
from provisioner.settings import ApiSettings, is_loopback_url
from tests.helpers import TEST_TOKEN, Pki, issue, no_sleep

BODY = {"name": "alpha", "config": {"type": "cloud"}}
HTTPS_READY = re.compile(
    r"provisioner emulator listening on (https://127\.0\.0\.1:\d+/api/v1/cloud)\n"
)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA and a certificate for localhost and 127.0.0.1."""
    return issue(tmp_path, "localhost", "127.0.0.1")


@pytest.fixture
def no_cert_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SSL_CERT_FILE/SSL_CERT_DIR: the system store, which knows no test CA."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
async def tls_emulator(pki: Pki) -> AsyncIterator[Emulator]:
    """The in-process emulator serving HTTPS with the ``pki`` certificate."""
    config = EmulatorConfig(
        token=TEST_TOKEN, tls_cert=pki.cert_file, tls_key=pki.key_file
    )
    async with Emulator(config) as emu:
        yield emu


@dataclass
class CountingTls:
    """A TLS server that counts handshakes begun and requests that got through."""

    url: str = ""
    handshakes: int = 0
    requests: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def counting_tls_server(pki: Pki) -> AsyncIterator[CountingTls]:
    seen = CountingTls()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)

    def on_hello(*_: object) -> None:
        seen.handshakes += 1

    context.sni_callback = on_hello

    async def record(request: web.Request) -> web.StreamResponse:
        seen.requests.append(request.path)
        return web.json_response({"id": "env_" + "0" * 32}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        seen.url = f"https://localhost:{runner.addresses[0][1]}/api"
        yield seen
    finally:
        await runner.cleanup()


async def create_on(url: str, *, ca_file: str | None = None) -> str:
    """Create ``BODY`` at ``url`` and return the new id."""
    settings = ApiSettings(
        token=Secret(TEST_TOKEN), base_url=url, timeout_s=10, ca_file=ca_file
    )
    async with open_session(concurrency=1, timeout_s=10, ca_file=ca_file) as session:
        created = await ApiClient(session, settings=settings).create(
            BODY, idempotency_key="k-1"
        )
    return created.env_id


async def create_with_retries(url: str) -> tuple[int, BaseException]:
    """Create through a generous retry policy; return (attempts, the error raised)."""
    attempts = 0
    settings = ApiSettings(token=Secret(TEST_TOKEN), base_url=url, timeout_s=10)
    policy = RetryPolicy(max_attempts=5, sleep=no_sleep)
    async with open_session(concurrency=1, timeout_s=10) as session:
        client = ApiClient(session, settings=settings)

        async def call() -> None:
            nonlocal attempts
            async for attempt in policy.retrying(budget=RetryBudget()):
                with attempt:
                    attempts += 1
                    await client.create(BODY, idempotency_key="k-1")

        with pytest.raises(TransportError) as caught:
            await call()
    return attempts, caught.value


# --- TLS ------------------------------------------------------------------------


async def test_the_client_trusts_a_server_signed_by_its_ca_file(tls_emulator, pki):
    """With ca_file naming the private CA, a create over https succeeds."""
    assert tls_emulator.url.startswith("https://127.0.0.1:")
    env_id = await create_on(tls_emulator.url, ca_file=pki.ca_file)
    assert [env["id"] for env in tls_emulator.environments()] == [env_id]


async def test_an_untrusted_certificate_is_a_tls_error_tried_once(pki, no_cert_env):
    """Without the CA the certificate fails once as tls_error, never retried."""
    async with counting_tls_server(pki) as server:
        attempts, error = await create_with_retries(server.url)
    assert isinstance(error, TransportError)
    assert error.error_type == "tls_error"
    assert not error.is_retryable
    assert not error.is_ambiguous
    assert decide(error) == NO_RETRY
    assert "certificate" in str(error).lower()
    assert attempts == 1
    assert server.handshakes == 1
    assert server.requests == []


async def test_a_certificate_for_another_host_is_a_tls_error(tmp_path):
    """A trusted CA does not make a certificate for another name acceptable."""
    pki = issue(tmp_path, "other.example")
    config = EmulatorConfig(
        token=TEST_TOKEN, tls_cert=pki.cert_file, tls_key=pki.key_file
    )
    async with Emulator(config) as emu:
        with pytest.raises(TransportError) as caught:
            await create_on(emu.url, ca_file=pki.ca_file)
        assert emu.environments() == []
    assert caught.value.error_type == "tls_error"


async def test_ssl_cert_file_names_a_trusted_ca(tls_emulator, pki, monkeypatch):
    """Without ca_file the default context honours SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", pki.ca_file)
    env_id = await create_on(tls_emulator.url)
    assert env_id.startswith("env_")


async def test_a_ca_file_that_is_not_pem_is_a_config_error(tmp_path):
    """open_session refuses a CA file that holds no certificate, naming it."""
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=re.escape(str(bogus))):
        open_session(concurrency=1, timeout_s=1, ca_file=str(bogus))


def test_a_missing_ca_file_is_a_config_error_naming_it(tmp_path):
    """ApiSettings refuses a ca_file it cannot read and says which."""
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=re.escape(missing)):
        ApiSettings(token=Secret("t"), base_url="https://api.example", ca_file=missing)


async def test_the_emulator_command_serves_https_with_tls_flags(pki):
    """``provisioner emulator --tls-cert --tls-key`` prints an https URL and serves it."""
    env = {**os.environ, "QODER_PAT": TEST_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provisioner.emulator", "--port", "0",
        "--tls-cert", pki.cert_file, "--tls-key", pki.key_file,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
        match = HTTPS_READY.fullmatch(line.decode())
        assert match, line
        context = ssl.create_default_context(cafile=pki.ca_file)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                match.group(1) + "/environments",
                headers={"Authorization": f"Bearer {TEST_TOKEN}"},
                ssl=context,
            ) as response,
        ):
            assert response.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, err


# --- plain http -----------------------------------------------------------------

LOOPBACK = [
    "http://127.0.0.1:8080/api",
    "http://127.255.0.9/api",
    "http://[::1]:8080/api",
    "http://localhost:8080/api",
    "http://LOCALHOST/api",
]
NOT_LOOPBACK = [
    "http://127.0.0.1.evil.example/",
    "http://localhost.evil/",
    "http://api.example/",
    "http://10.0.0.1/",
    "http://0.0.0.0:8080/",
    "http://[::]:8080/",
    "http://127.1/",
]
USERINFO = [
    "http://127.0.0.1@evil.example/",
    "http://localhost:pw@evil.example/",
    "https://user:hunter2-pw@api.example/api",
    "http://127.0.0.1\\@evil.example/",
]


@pytest.mark.parametrize("url", LOOPBACK)
def test_plain_http_to_a_loopback_host_is_allowed_quietly(url):
    """http:// to 127.0.0.0/8, ::1 or localhost needs no flag and warns nothing."""
    assert is_loopback_url(url)
    assert ApiSettings(token=Secret("t"), base_url=url).base_url == url


@pytest.mark.parametrize("url", NOT_LOOPBACK)
def test_plain_http_elsewhere_is_refused_without_allow_insecure_http(url):
    """Look-alike and remote hosts are not loopback: the error names the flag."""
    assert not is_loopback_url(url)
    with pytest.raises(ConfigError, match="--allow-insecure-http"):
        ApiSettings(token=Secret("t"), base_url=url)


@pytest.mark.parametrize("url", NOT_LOOPBACK)
def test_allow_insecure_http_permits_plain_http_with_a_warning(url):
    """With allow_insecure_http the URL is accepted and a warning says why it is risky."""
    with pytest.warns(UserWarning, match="unencrypted"):
        ApiSettings(token=Secret("t"), base_url=url, allow_insecure_http=True)


@pytest.mark.parametrize("url", USERINFO)
def test_a_url_with_user_info_is_refused_without_echoing_it(url):
    """user:password@ is refused, flag or not, and the password is not repeated."""
    assert not is_loopback_url(url)
    with pytest.raises(ConfigError) as caught:
        ApiSettings(token=Secret("t"), base_url=url, allow_insecure_http=True)
    assert "@" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "evil" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["https://api.example/a?x=1", "https://api.example/#f", "https://a b/"]
)
def test_a_url_with_a_query_fragment_or_space_is_refused(url):
    """A base URL the client appends paths to has no query, fragment or spaces."""
    with pytest.raises(ConfigError):
        ApiSettings(token=Secret("t"), base_url=url)


def test_from_env_passes_ca_file_and_allow_insecure_http(pki):
    """from_env takes the CA file and the insecure-http switch as keywords."""
    env = {"QODER_PAT": "pt-x", "QODER_API_URL": "http://api.example/v1"}
    with pytest.warns(UserWarning, match="unencrypted"):
        settings = ApiSettings.from_env(
            env, ca_file=pki.ca_file, allow_insecure_http=True
        )
    assert settings.ca_file == pki.ca_file
    assert settings.allow_insecure_http
    with pytest.raises(ConfigError, match="--allow-insecure-http"):
        ApiSettings.from_env(env)
