"""``ApiClient`` on aiohttp at the wire: real loopback servers, framing, caps and failures.

These carry over what the own HTTP/1.1 transport was tested for, now asked of
the client as a user sees it: an answer, or a ``TransportError`` of the right
type that says whether the request may have reached the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from provisioner.api.client import MAX_HEADERS, ApiClient, open_session
from provisioner.errors import TransportError
from provisioner.redact import Secret
from provisioner.settings import ApiSettings
from tests.helpers import TEST_TOKEN, eventually

ENV_ID = "env_" + "a" * 32
OK_BODY = b'{"id": "%b"}' % ENV_ID.encode()
OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(OK_BODY), OK_BODY)
STALE_BODY = b'{"id": "stale"}'
STALE = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (
    len(STALE_BODY),
    STALE_BODY,
)
HUNDRED_MB = 100 * 1024 * 1024
MB = b"x" * (1024 * 1024)
KB_CHUNK = b"400\r\n" + b"x" * 1024 + b"\r\n"
CAP = 4096


def framed(body: bytes, status: str = "200 OK", *headers: bytes) -> bytes:
    """An HTTP/1.1 answer with ``body`` and a Content-Length."""
    head = b"HTTP/1.1 %b\r\n" % status.encode() + b"".join(headers)
    return head + b"Content-Length: %d\r\n\r\n%b" % (len(body), body)


# --- a raw server: exact bytes, one script per accepted connection ---------------


@dataclass
class Peer:
    """One connection a raw server accepted, numbered from 0 in order."""

    number: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def read_request(self) -> bytes:
        """The next request (head and body), or ``b""`` once the client hung up."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return b""
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head + await self.reader.readexactly(length)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def wait_for_hang_up(self) -> None:
        """Read nothing more, until the client closes or aborts the connection."""
        with contextlib.suppress(ConnectionError):
            await self.reader.read()


Script = Callable[[Peer], Awaitable[None]]


@dataclass
class RawServer:
    """A running raw server: its URL and the connections it accepted."""

    url: str
    peers: list[Peer]

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return len(self.peers)


StartRaw = Callable[[Script], Awaitable[RawServer]]


@pytest.fixture
async def raw_server() -> AsyncIterator[StartRaw]:
    """Factory: ``await raw_server(script)`` serves 127.0.0.1:0, one ``script`` per connection.

    A script's ``ConnectionError`` (the client hung up) ends it quietly.
    """
    servers: list[asyncio.Server] = []
    peers: list[Peer] = []
    tasks: list[asyncio.Task[None]] = []

    async def start(script: Script) -> RawServer:
        mine: list[Peer] = []

        async def on_connection(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            peer = Peer(len(mine), reader, writer)
            mine.append(peer)
            peers.append(peer)
            task = asyncio.current_task()
            assert task is not None
            tasks.append(task)
            try:
                await script(peer)
            except ConnectionError:
                pass
            finally:
                writer.close()
                peer.ended.set()

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return RawServer(f"http://127.0.0.1:{port}", mine)

    yield start
    for peer in peers:  # wakes every script still reading: it sees the end
        peer.writer.close()
    await asyncio.gather(*tasks)
    for server in servers:
        server.close()
        await server.wait_closed()


def answering(*answers: bytes) -> Script:
    """A script: answer each request with the next of ``answers`` (the last repeats)."""

    async def script(peer: Peer) -> None:
        n = 0
        while await peer.read_request():
            await peer.send(answers[min(n, len(answers) - 1)])
            n += 1

    return script


def first_connection(first: Script) -> Script:
    """A script: ``first`` on the first connection, then ``OK`` to every request."""
    then = answering(OK)

    async def script(peer: Peer) -> None:
        await (first if peer.number == 0 else then)(peer)

    return script


def once(answer: bytes) -> Script:
    """A script: read one request, send ``answer``, close."""

    async def script(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer)

    return script


@contextlib.asynccontextmanager
async def client_for(
    url: str, *, concurrency: int = 1, timeout_s: float = 5.0, **session: Any
) -> AsyncIterator[ApiClient]:
    """An ``ApiClient`` for ``url`` on its own session, with a 4 KiB answer cap."""
    settings = ApiSettings(token=Secret(TEST_TOKEN), base_url=url, timeout_s=timeout_s)
    async with open_session(
        concurrency=concurrency, timeout_s=timeout_s, **session
    ) as http:
        yield ApiClient(http, settings=settings, max_answer_bytes=CAP)


async def failure(client: ApiClient, env_id: str = ENV_ID) -> TransportError:
    """The ``TransportError`` a get of ``env_id`` raises."""
    with pytest.raises(TransportError) as caught:
        await client.get(env_id)
    return caught.value


# --- an aiohttp server ---------------------------------------------------------


@dataclass
class WebServer:
    """A running aiohttp server: its URL, and per request the client's address
    and how many connections were open at that moment."""

    url: str
    peers: list[object]
    open_counts: list[int]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
StartWeb = Callable[..., Awaitable[WebServer]]


async def echo_id(request: web.Request) -> web.StreamResponse:
    """Answers the environment the path names, with the path in its description."""
    env_id = request.path.rsplit("/", 1)[-1]
    return web.json_response({"id": env_id, "description": request.path})


@pytest.fixture
async def web_server() -> AsyncIterator[StartWeb]:
    """Factory: ``await web_server(handler, ssl_context=None)`` serves 127.0.0.1:0."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            handler: Handler = echo_id, *, ssl_context: ssl.SSLContext | None = None
        ) -> WebServer:
            peers: list[object] = []
            open_counts: list[int] = []
            runner: web.AppRunner

            async def record(request: web.Request) -> web.StreamResponse:
                assert request.transport is not None
                assert runner.server is not None
                peers.append(request.transport.get_extra_info("peername"))
                open_counts.append(len(runner.server.connections))
                return await handler(request)

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", record)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
            scheme = "https" if ssl_context else "http"
            url = f"{scheme}://127.0.0.1:{runner.addresses[0][1]}/api"
            return WebServer(url, peers, open_counts)

        yield start


def env(n: int) -> str:
    return f"env_{n:032x}"


# --- keep-alive and concurrency ---------------------------------------------------


async def test_sequential_requests_reuse_one_connection(web_server):
    """Fifty requests one after another travel over a single kept-alive connection."""
    server = await web_server()
    async with client_for(server.url, concurrency=4) as client:
        for n in range(50):
            got = await client.get(env(n))
            assert got["description"] == f"/api/environments/{env(n)}"
    assert len(server.peers) == 50
    assert len(set(server.peers)) == 1


async def test_concurrent_requests_never_open_more_connections_than_the_pool(
    web_server,
):
    """Twenty requests at once on a pool of 3 (concurrency 1 + 2 spare) all get their own answer."""
    in_flight = 0
    three_in_flight = asyncio.Event()

    async def wait_for_company(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 3:
            three_in_flight.set()
        async with asyncio.timeout(5):
            await three_in_flight.wait()
        in_flight -= 1
        return await echo_id(request)

    server = await web_server(wait_for_company)
    async with client_for(server.url, concurrency=1, timeout_s=10) as client:
        answers = await asyncio.gather(*(client.get(env(n)) for n in range(20)))
    assert [a["id"] for a in answers] == [env(n) for n in range(20)]
    assert len(set(server.peers)) == 3
    assert max(server.open_counts) <= 3


async def test_a_create_reaches_the_server_with_its_headers_and_exact_body(
    web_server,
):
    """The server receives the token, the key, the retry count, a Host with the port and the JSON body."""
    seen: dict[str, Any] = {}

    async def record(request: web.Request) -> web.StreamResponse:
        seen.update(
            host=request.host,
            auth=request.headers["Authorization"],
            key=request.headers["Idempotency-Key"],
            retries=request.headers["X-Qoder-Retry-Count"],
            encoding=request.headers.get("Accept-Encoding"),
            cookie=request.headers.get("Cookie"),
            body=await request.read(),
        )
        return web.json_response(
            {"id": ENV_ID}, status=201, headers={"Set-Cookie": "a=b"}
        )

    server = await web_server(record)
    async with client_for(server.url) as client:
        for attempt in (1, 2):
            await client.create({"name": "a"}, idempotency_key="k-1", attempt=attempt)
    port = server.url.split(":")[2].split("/")[0]
    assert seen["host"] == f"127.0.0.1:{port}"
    assert seen["auth"] == f"Bearer {TEST_TOKEN}"
    assert (seen["key"], seen["retries"]) == ("k-1", "1")
    assert seen["body"] == b'{"name":"a"}'
    assert seen["encoding"] is None  # no compression asked for
    assert seen["cookie"] is None  # no cookie kept


# --- framing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        OK,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10\r\n" + OK_BODY[:16] + b"\r\n%x\r\n" % (len(OK_BODY) - 16)
        + OK_BODY[16:] + b"\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)  # fmt: skip
async def test_a_framed_answer_is_read_whole_and_its_connection_kept(
    raw_server, answer
):
    """An answer framed by Content-Length or chunks gives the whole body, and the connection is reused."""
    server = await raw_server(answering(answer))
    async with client_for(server.url) as client:
        for _ in range(2):
            assert (await client.get(ENV_ID))["id"] == ENV_ID
    assert server.connections == 1


async def test_an_answer_without_length_is_read_until_the_server_closes(raw_server):
    """A Connection: close answer with no length ends at the close; the next request reconnects."""

    async def until_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + OK_BODY[:9])
        await peer.send(OK_BODY[9:])

    server = await raw_server(until_close)
    async with client_for(server.url) as client:
        for _ in range(2):
            assert (await client.get(ENV_ID))["id"] == ENV_ID
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        framed(OK_BODY, "200 OK", b"Connection: close\r\n"),
        OK.replace(b"HTTP/1.1", b"HTTP/1.0"),
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_an_answer_that_does_not_keep_alive_is_never_reused(raw_server, answer):
    """After a Connection: close or HTTP/1.0 answer the client hangs up, even if the server lingers."""

    async def linger(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer)
        await peer.wait_for_hang_up()

    server = await raw_server(linger)
    async with client_for(server.url) as client:
        for _ in range(2):
            assert (await client.get(ENV_ID))["id"] == ENV_ID
        async with asyncio.timeout(5):
            await server.peers[0].ended.wait()
    assert server.connections == 2


async def test_an_interim_100_continue_is_skipped(raw_server):
    """A 100 Continue before the real answer is passed over."""
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    server = await raw_server(answering(answer))
    async with client_for(server.url) as client:
        assert (await client.get(ENV_ID))["id"] == ENV_ID


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
    ids=["content-length", "chunked", "headers"],
)
async def test_an_answer_cut_short_by_a_close_is_a_lost_connection(raw_server, answer):
    """A close before the declared end of an answer is a lost connection that may have committed."""
    server = await raw_server(once(answer))
    async with client_for(server.url) as client:
        error = await failure(client)
    assert (error.error_type, error.is_ambiguous) == ("connection_reset", True)


async def test_a_retry_after_header_is_read_whatever_its_case(raw_server):
    """``retry-after`` in lower case is the wait of a 429, and the first request id wins."""
    answer = framed(
        b"", "429 Too Many Requests", b"retry-after: 7\r\n",
        b"X-Request-Id: first\r\nx-request-id: second\r\n",
    )  # fmt: skip
    server = await raw_server(answering(answer))
    async with client_for(server.url) as client:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - checked below
            await client.get(ENV_ID)
    error = caught.value
    assert getattr(error, "status", None) == 429
    assert getattr(error, "retry_after_s", None) == 7.0
    assert getattr(error, "request_id", None) == "first"


# --- caps ---------------------------------------------------------------------------------


async def send_chunks_forever(peer: Peer) -> None:
    await peer.read_request()
    await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(1024):  # 1 MiB in all: ends even if the client keeps reading
        await peer.send(KB_CHUNK)


async def send_until_close_forever(peer: Peer) -> None:
    await peer.read_request()
    await peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    for _ in range(1024):
        await peer.send(b"x" * 1024)


def sending_head(*lines: bytes) -> Script:
    """A script: answer the first request with these header lines and no body."""
    return once(framed(b"", "200 OK", *lines))


WIDE = b"a" * 20_000
MANY_HEADERS = [b"X-N-%d: 1\r\n" % n for n in range(MAX_HEADERS + 10)]


@pytest.mark.parametrize(
    "oversized",
    [
        once(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (CAP + 1)),
        send_chunks_forever,
        send_until_close_forever,
        sending_head(b"X-Pad: " + WIDE + b"\r\n"),
        sending_head(*MANY_HEADERS),
    ],
    ids=["declared", "chunked", "until-close", "header-bytes", "header-count"],
)
async def test_an_oversized_answer_fails_and_its_connection_is_not_reused(
    raw_server, oversized
):
    """Past the body cap or the header limits the request fails; the next one opens a new connection."""
    server = await raw_server(first_connection(oversized))
    async with client_for(server.url) as client:
        error = await failure(client)
        assert error.error_type == "bad_answer"
        assert (await client.get(ENV_ID))["id"] == ENV_ID
    assert server.connections == 2


async def test_a_declared_100_mb_body_fails_without_being_buffered(raw_server):
    """A 100 MB Content-Length above the cap fails at once: the server cannot even deliver it."""
    sent: list[int] = []

    async def hundred_mb(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % HUNDRED_MB)
        for _ in range(100):
            await peer.send(MB)
            sent.append(len(MB))

    server = await raw_server(hundred_mb)
    async with client_for(server.url, timeout_s=30) as client:
        error = await failure(client)
    async with asyncio.timeout(5):  # its writes fail once the client hangs up
        await server.peers[0].ended.wait()
    assert error.error_type == "bad_answer"
    assert sum(sent) < HUNDRED_MB // 2


async def test_one_endless_header_line_fails_as_it_arrives(raw_server):
    """A header line that never ends fails once it passes the cap, not at the deadline."""

    async def endless_header(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nX-Big: ")
        for _ in range(16):  # 16 MiB, never ended by CRLF
            await peer.send(MB)
        await peer.wait_for_hang_up()

    server = await raw_server(endless_header)
    async with client_for(server.url, timeout_s=30) as client:
        error = await failure(client)
    assert error.error_type == "bad_answer"


# --- timeouts and failures --------------------------------------------------------------


async def test_a_silent_server_times_out_and_the_pool_stays_usable(raw_server):
    """A server that never answers gives a timeout (it may have committed); the next request works."""

    async def silent(peer: Peer) -> None:
        await peer.read_request()
        await peer.wait_for_hang_up()

    server = await raw_server(first_connection(silent))
    async with client_for(server.url, timeout_s=0.3) as client:
        error = await failure(client)
        assert (await client.get(ENV_ID))["id"] == ENV_ID
    assert (error.error_type, error.is_ambiguous) == ("timeout", True)
    assert server.connections == 2


async def test_a_refused_port_is_a_connect_error_that_sent_nothing():
    """Nothing listening on the port: connection_error, not ambiguous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with client_for(f"http://127.0.0.1:{port}") as client:
        error = await failure(client)
    assert (error.error_type, error.is_ambiguous) == ("connection_error", False)
    assert "cannot connect" in str(error)


async def test_a_hang_up_after_a_create_is_a_lost_connection_never_resent(
    raw_server,
):
    """A server that reads a create and closes without a word: connection_reset,
    ambiguous, and the HTTP layer does not send the create again by itself."""

    async def hang_up(peer: Peer) -> None:
        await peer.read_request()

    server = await raw_server(hang_up)
    async with client_for(server.url) as client:
        with pytest.raises(TransportError) as caught:
            await client.create({"name": "a"}, idempotency_key="k")
    error = caught.value
    assert (error.error_type, error.is_ambiguous) == ("connection_reset", True)
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: upgrade\r\n\r\n",
    ],
    ids=["not-http", "protocol-switch"],
)
async def test_an_answer_that_is_not_http_we_speak_fails(raw_server, answer):
    """Garbage, or a switch to another protocol, is a failure that may have committed."""
    server = await raw_server(answering(answer))
    async with client_for(server.url) as client:
        with pytest.raises(TransportError) as caught:
            await client.create({"name": "a"}, idempotency_key="k")
    assert caught.value.is_ambiguous


async def test_a_redirect_is_never_followed(raw_server):
    """A 307 to another host is a failure naming the Location; the token is not handed on."""
    answer = framed(b"", "307 Temporary Redirect", b"Location: http://evil.test/\r\n")
    server = await raw_server(answering(answer))
    async with client_for(server.url) as client:
        with pytest.raises(Exception, match=r"redirect to http://evil\.test/"):
            await client.get(ENV_ID)
    assert server.connections == 1


async def test_bytes_on_an_idle_connection_are_never_taken_for_the_environment(
    raw_server,
):
    """A server that speaks unasked on an idle connection gets no stale answer believed:
    the get that reads it fails with bad_answer instead of returning another object."""
    speak_up = asyncio.Event()
    spoke = asyncio.Event()

    async def chatty(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(OK)
        await speak_up.wait()
        await peer.send(STALE)
        spoke.set()
        await peer.wait_for_hang_up()

    server = await raw_server(first_connection(chatty))
    async with client_for(server.url, timeout_s=1) as client:
        first = await client.get(ENV_ID)
        speak_up.set()
        await spoke.wait()
        error = await failure(client)
    assert first["id"] == ENV_ID
    assert error.error_type == "bad_answer"


async def test_a_cancelled_request_leaves_no_stale_answer_for_the_next(raw_server):
    """After a request is cancelled mid-wait, the next request gets its own answer, never the stale one."""
    slow_read = asyncio.Event()
    release = asyncio.Event()

    async def by_path(peer: Peer) -> None:
        while request := await peer.read_request():
            if b"/environments/" + env(1).encode() in request.split(b"\r\n")[0]:
                slow_read.set()
                await release.wait()
                await peer.send(STALE)
            else:
                await peer.send(OK)

    server = await raw_server(by_path)
    async with client_for(server.url) as client:
        slow = asyncio.create_task(client.get(env(1)))
        await slow_read.wait()
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        release.set()
        got = await client.get(ENV_ID)
    assert got["id"] == ENV_ID
    assert server.connections == 2


async def test_after_close_idle_connections_are_closed_and_requests_fail(raw_server):
    """Closing the session hangs up idle connections; a later request fails without a connection."""
    server = await raw_server(answering(OK))
    async with client_for(server.url) as client:
        await client.get(ENV_ID)
    async with asyncio.timeout(5):  # the server's script ends once the client hangs up
        await server.peers[0].ended.wait()
    with pytest.raises(TransportError):
        await client.get(ENV_ID)
    assert server.connections == 1


# --- https ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A private CA, made once for this module."""
    return trustme.CA()


@pytest.fixture
async def tls_server(web_server: StartWeb, ca: trustme.CA) -> WebServer:
    """An aiohttp server over TLS, its certificate issued by ``ca`` for 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return await web_server(ssl_context=context)


async def test_https_succeeds_when_the_ca_file_is_trusted(tls_server, ca, tmp_path):
    """With the server's CA as the CA file, an https request is answered."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with client_for(tls_server.url, ca_file=str(ca_file)) as client:
        assert (await client.get(ENV_ID))["id"] == ENV_ID


async def test_https_succeeds_with_a_hashed_ca_directory(tls_server, ca, tmp_path):
    """A CA directory (as REQUESTS_CA_BUNDLE or SSL_CERT_DIR may name) is trusted too."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(cafile=str(ca_file))
    subject_hash = _subject_hash(context)
    (tmp_path / "certs").mkdir()
    ca.cert_pem.write_to_path(str(tmp_path / "certs" / f"{subject_hash}.0"))
    async with client_for(tls_server.url, ca_file=str(tmp_path / "certs")) as client:
        assert (await client.get(ENV_ID))["id"] == ENV_ID


def _subject_hash(context: ssl.SSLContext) -> str:
    """OpenSSL's subject hash of the one CA in ``context`` (the name c_rehash gives)."""
    import subprocess

    der = context.get_ca_certs(binary_form=True)[0]
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash"],  # noqa: S607 - the system's openssl
        input=pem.encode(),
        capture_output=True,
        check=True,
    )
    return out.stdout.decode().strip()


async def test_https_fails_with_a_tls_error_when_the_ca_is_unknown(
    tls_server, monkeypatch
):
    """A certificate from a CA nobody trusts is a tls_error that is not retried, and nothing is sent."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with client_for(tls_server.url) as client:
        error = await failure(client)
    assert (error.error_type, error.is_retryable) == ("tls_error", False)
    assert tls_server.peers == []


# --- addresses and idle connections ---------------------------------------------------------------


class StaticResolver(aiohttp.abc.AbstractResolver):
    """A DNS answer fixed in advance: ``host`` resolves to these (address, port) pairs, in order."""

    def __init__(self, host: str, addresses: list[tuple[str, int]]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        assert host == self._host
        return [
            {
                "hostname": host,
                "host": address,
                "port": address_port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address, address_port in self._addresses
        ]

    async def close(self) -> None:
        return None


@contextlib.contextmanager
def black_hole() -> Any:
    """A loopback port whose SYNs go unanswered: its accept queue is full and never read."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in (*fillers, listener):
            sock.close()


async def test_an_unreachable_first_address_falls_back_to_the_next(web_server):
    """A host whose first address never answers is reached on its second, well within the deadline."""
    server = await web_server()
    port = int(server.url.split(":")[2].split("/")[0])
    with black_hole() as dead_port:
        resolver = StaticResolver(
            "api.test", [("127.0.0.1", dead_port), ("127.0.0.1", port)]
        )
        url = f"http://api.test:{port}/api"
        with pytest.warns(UserWarning, match="plain http"):
            settings = ApiSettings(
                token=Secret(TEST_TOKEN), base_url=url, allow_insecure_http=True
            )
        async with open_session(concurrency=1, timeout_s=3, resolver=resolver) as http:
            got = await ApiClient(http, settings=settings).get(ENV_ID)
    assert got["id"] == ENV_ID
    assert len(server.peers) == 1


@dataclass
class Relay:
    """A TCP relay in front of a server whose connections can be frozen: kept open,
    every byte swallowed, as a NAT or load balancer does once it forgot them."""

    url: str
    open: set[int] = field(default_factory=set)
    frozen: set[int] = field(default_factory=set)
    accepted: int = 0

    def freeze(self) -> None:
        """From now on, the connections open now swallow whatever they get."""
        self.frozen |= self.open


@pytest.fixture
async def relay(web_server: StartWeb) -> AsyncIterator[Relay]:
    """A :class:`Relay` on 127.0.0.1:0 in front of a ``web_server()``."""
    server = await web_server()
    upstream_port = int(server.url.split(":")[2].split("/")[0])
    state = Relay(url="")
    tasks: set[asyncio.Task[None]] = set()

    async def pump(
        number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if number not in state.frozen:
                    writer.write(data)
                    await writer.drain()

    async def on_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        number = state.accepted
        state.accepted += 1
        state.open.add(number)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        back = asyncio.create_task(pump(number, up_reader, writer))
        tasks.add(back)
        await pump(number, reader, up_writer)  # ends when the client hangs up
        state.open.discard(number)
        up_writer.close()
        writer.close()

    listener = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/api"
    yield state
    listener.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_an_idle_pool_reconnects_without_waiting_for_a_timeout(relay):
    """After the idle expiry closed the pool's connection, a request whose old path was
    silently dropped opens a new one and is answered at the first attempt."""
    async with client_for(relay.url, timeout_s=2, idle_close_s=0.2) as client:
        await client.get(ENV_ID)
        relay.freeze()
        await eventually(lambda: not relay.open)  # the client closed it when idle
        assert (await client.get(ENV_ID))["id"] == ENV_ID
    assert relay.accepted == 2


async def test_without_idle_expiry_a_dropped_connection_costs_a_timeout(relay):
    """The contrast: a pool that keeps idle connections sends into the dropped one and times out."""
    async with client_for(relay.url, timeout_s=0.5, idle_close_s=60) as client:
        await client.get(ENV_ID)
        relay.freeze()
        error = await failure(client)
    assert error.error_type == "timeout"
    assert relay.accepted == 1
