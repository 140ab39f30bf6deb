"""``HttpPool`` at its own boundary: real loopback servers, framing, caps and failures."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trustme
from aiohttp import web

from provisioner.transport import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    AnswerTooLargeError,
    ConnectError,
    ConnectionLostError,
    HttpPool,
    Origin,
    ProtocolError,
    TlsError,
    header_block,
    request_line,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
STALE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
HUNDRED_MB = 100 * 1024 * 1024
MB = b"x" * (1024 * 1024)
KB_CHUNK = b"400\r\n" + b"x" * 1024 + b"\r\n"
CAP = 4096


def get(path: str = "/") -> bytes:
    """The head of a plain GET of ``path``."""
    return request_line("GET", path)


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
    """A running raw server: where it is and every request it read."""

    origin: Origin
    peers: list[Peer]
    requests: list[bytes] = field(default_factory=list)

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
        return RawServer(Origin.of(f"http://127.0.0.1:{port}"), mine)

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


# --- an aiohttp server ---------------------------------------------------------


@dataclass
class WebServer:
    """A running aiohttp server: where it is, and per request the client's address
    and how many connections were open at that moment."""

    origin: Origin
    peers: list[object]
    open_counts: list[int]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
StartWeb = Callable[..., Awaitable[WebServer]]


async def echo_path(request: web.Request) -> web.StreamResponse:
    return web.Response(body=request.path.encode())


@pytest.fixture
async def web_server() -> AsyncIterator[StartWeb]:
    """Factory: ``await web_server(handler, ssl_context=None)`` serves 127.0.0.1:0."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            handler: Handler = echo_path, *, ssl_context: ssl.SSLContext | None = None
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
            url = f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"
            return WebServer(Origin.of(url), peers, open_counts)

        yield start


# --- keep-alive and concurrency ---------------------------------------------------


async def test_sequential_requests_reuse_one_connection(web_server):
    """Fifty requests one after another travel over a single kept-alive connection."""
    server = await web_server()
    async with HttpPool(limit=4, timeout_s=5) as pool:
        for n in range(50):
            answer = await pool.request(server.origin, get(f"/{n}"), max_body_bytes=CAP)
            assert (answer.status, answer.body) == (200, f"/{n}".encode())
    assert len(server.peers) == 50
    assert len(set(server.peers)) == 1


async def test_concurrent_requests_never_open_more_connections_than_the_limit(
    web_server,
):
    """Twenty requests at once with limit=3 all get their own answer over at most 3 connections."""
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
        return await echo_path(request)

    server = await web_server(wait_for_company)
    async with HttpPool(limit=3, timeout_s=10) as pool:
        answers = await asyncio.gather(
            *(
                pool.request(server.origin, get(f"/{n}"), max_body_bytes=CAP)
                for n in range(20)
            )
        )
    assert [a.body for a in answers] == [f"/{n}".encode() for n in range(20)]
    assert len(set(server.peers)) == 3
    assert max(server.open_counts) <= 3


async def test_a_post_reaches_the_server_with_host_and_content_length(web_server):
    """The server receives the caller's headers, a Host with the port and the exact body."""

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = f"{request.method} {request.host} {request.headers['X-Test']} "
        return web.Response(body=seen.encode() + body)

    server = await web_server(echo)
    head = request_line("POST", "/items") + header_block({"X-Test": "yes"})
    async with HttpPool(limit=1, timeout_s=5) as pool:
        answer = await pool.request(server.origin, head, b"payload", max_body_bytes=CAP)
    port = server.origin.port
    assert answer.body == f"POST 127.0.0.1:{port} yes payload".encode()


# --- framing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_a_framed_answer_is_read_whole_and_its_connection_kept(
    raw_server, answer
):
    """An answer framed by Content-Length or chunks gives the whole body, and the connection is reused."""
    server = await raw_server(answering(answer))
    async with HttpPool(limit=1, timeout_s=5) as pool:
        for _ in range(2):
            got = await pool.request(server.origin, get(), max_body_bytes=CAP)
            assert (got.status, got.body) == (200, b"hello world")
    assert server.connections == 1


async def test_an_answer_without_length_is_read_until_the_server_closes(raw_server):
    """A Connection: close answer with no length ends at the close; the next request reconnects."""

    async def until_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello ")
        await peer.send(b"world")

    server = await raw_server(until_close)
    async with HttpPool(limit=1, timeout_s=5) as pool:
        for _ in range(2):
            got = await pool.request(server.origin, get(), max_body_bytes=CAP)
            assert (got.status, got.body) == (200, b"hello world")
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
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
    async with HttpPool(limit=1, timeout_s=5) as pool:
        for _ in range(2):
            got = await pool.request(server.origin, get(), max_body_bytes=CAP)
            assert got.body == b"ok"
        async with asyncio.timeout(5):
            await server.peers[0].ended.wait()
    assert server.connections == 2


async def test_interim_1xx_answers_are_skipped(raw_server):
    """100 Continue and 103 Early Hints before the real answer are passed over, headers included."""
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone"
    )
    server = await raw_server(answering(answer))
    async with HttpPool(limit=1, timeout_s=5) as pool:
        got = await pool.request(server.origin, get(), max_body_bytes=CAP)
    assert (got.status, got.body) == (201, b"done")
    assert "Link" not in got.headers


async def test_a_204_answer_has_an_empty_body_and_keeps_the_connection(raw_server):
    """A 204 without any length header is complete at once and its connection is reused."""
    server = await raw_server(answering(b"HTTP/1.1 204 No Content\r\n\r\n"))
    async with HttpPool(limit=1, timeout_s=5) as pool:
        for _ in range(2):
            got = await pool.request(server.origin, get(), max_body_bytes=CAP)
            assert (got.status, got.body) == (204, b"")
    assert server.connections == 1


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
    """A close before the declared end of an answer is a lost connection, not a short body."""
    server = await raw_server(once(answer))
    async with HttpPool(limit=1, timeout_s=5) as pool:
        with pytest.raises(ConnectionLostError):
            await pool.request(server.origin, get(), max_body_bytes=CAP)


# --- headers --------------------------------------------------------------------------


async def test_header_names_are_case_insensitive_and_the_first_repeat_wins(
    raw_server,
):
    """headers.get("Retry-After") finds retry-after, and a repeated header keeps its first value."""
    answer = (
        b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\n"
        b"X-Request-Id: first\r\nx-request-id: second\r\nContent-Length: 0\r\n\r\n"
    )
    server = await raw_server(answering(answer))
    async with HttpPool(limit=1, timeout_s=5) as pool:
        got = await pool.request(server.origin, get(), max_body_bytes=CAP)
    assert got.status == 429
    assert got.headers.get("Retry-After") == "7"
    assert got.headers["RETRY-AFTER"] == "7"
    assert "Retry-After" in got.headers
    assert got.headers.get("X-REQUEST-ID") == "first"
    assert got.headers.get("X-Missing") is None


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
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(lines) + b"Content-Length: 0\r\n\r\n"
    return once(head)


WIDE = b"a" * 1000
BIG_HEADERS = [b"X-Pad-%d: %b\r\n" % (n, WIDE) for n in range(MAX_HEADER_BYTES // 900)]
MANY_HEADERS = [b"X-N-%d: 1\r\n" % n for n in range(MAX_HEADERS + 10)]


@pytest.mark.parametrize(
    "oversized",
    [
        once(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (CAP + 1)),
        send_chunks_forever,
        send_until_close_forever,
        sending_head(*BIG_HEADERS),
        sending_head(*MANY_HEADERS),
    ],
    ids=["declared", "chunked", "until-close", "header-bytes", "header-count"],
)
async def test_an_oversized_answer_fails_and_its_connection_is_not_reused(
    raw_server, oversized
):
    """Past the body cap or the header limits the request fails; the next one opens a new connection."""
    server = await raw_server(first_connection(oversized))
    async with HttpPool(limit=1, timeout_s=5) as pool:
        with pytest.raises(AnswerTooLargeError):
            await pool.request(server.origin, get(), max_body_bytes=CAP)
        got = await pool.request(server.origin, get(), max_body_bytes=CAP)
    assert got.body == b"ok"
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
    loop = asyncio.get_running_loop()
    async with HttpPool(limit=1, timeout_s=30) as pool:
        started = loop.time()
        with pytest.raises(AnswerTooLargeError):
            await pool.request(server.origin, get(), max_body_bytes=1024 * 1024)
        waited_s = loop.time() - started
    async with asyncio.timeout(5):  # its writes fail once the client hangs up
        await server.peers[0].ended.wait()
    assert sum(sent) < HUNDRED_MB // 2
    assert waited_s < 5  # generous: far below the 30 s deadline


async def test_one_endless_header_line_fails_as_it_arrives(raw_server):
    """A single header line longer than MAX_HEADER_BYTES fails as it arrives, not at the deadline."""

    async def endless_header(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nX-Big: ")
        for _ in range(16):  # 16 MiB, never ended by CRLF
            await peer.send(MB)
        await peer.wait_for_hang_up()

    server = await raw_server(endless_header)
    async with HttpPool(limit=1, timeout_s=0.5) as pool:
        with pytest.raises(AnswerTooLargeError):
            await pool.request(server.origin, get(), max_body_bytes=CAP)


# --- timeouts and failures --------------------------------------------------------------


async def test_a_silent_server_times_out_and_the_pool_stays_usable(raw_server):
    """A server that never answers gives TimeoutError after about timeout_s; the next request works."""

    async def silent(peer: Peer) -> None:
        await peer.read_request()
        await peer.wait_for_hang_up()

    server = await raw_server(first_connection(silent))
    loop = asyncio.get_running_loop()
    async with HttpPool(limit=1, timeout_s=0.2) as pool:
        started = loop.time()
        with pytest.raises(TimeoutError):
            await pool.request(server.origin, get(), max_body_bytes=CAP)
        waited_s = loop.time() - started
        got = await pool.request(server.origin, get(), max_body_bytes=CAP)
    assert 0.15 <= waited_s < 2.0
    assert got.body == b"ok"
    assert server.connections == 2


async def test_a_refused_port_is_a_connect_error():
    """Nothing listening on the port: ConnectError, the request was never sent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    origin = Origin.of(f"http://127.0.0.1:{port}")
    async with HttpPool(limit=1, timeout_s=5) as pool:
        with pytest.raises(ConnectError):
            await pool.request(origin, get(), max_body_bytes=CAP)


async def test_a_server_that_hangs_up_after_the_request_is_a_lost_connection(
    raw_server,
):
    """A server that reads the request and closes without a word gives ConnectionLostError."""

    async def hang_up(peer: Peer) -> None:
        await peer.read_request()

    server = await raw_server(hang_up)
    async with HttpPool(limit=1, timeout_s=5) as pool:
        with pytest.raises(ConnectionLostError):
            await pool.request(server.origin, get(), max_body_bytes=CAP)
    assert server.connections == 1


async def test_garbage_instead_of_http_is_a_protocol_error(raw_server):
    """A server that answers with something that is not HTTP gives ProtocolError."""
    server = await raw_server(answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))
    async with HttpPool(limit=1, timeout_s=5) as pool:
        with pytest.raises(ProtocolError):
            await pool.request(server.origin, get(), max_body_bytes=CAP)


async def test_an_unasked_protocol_switch_is_a_protocol_error(raw_server):
    """A 101 Switching Protocols to a plain request is not HTTP as we speak it: ProtocolError."""
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    server = await raw_server(answering(switch))
    async with HttpPool(limit=1, timeout_s=5) as pool:
        with pytest.raises(ProtocolError):
            await pool.request(server.origin, get(), max_body_bytes=CAP)


async def test_bytes_on_an_idle_connection_make_the_pool_drop_it(raw_server):
    """A server that speaks unasked on an idle connection is hung up on; the next request is answered afresh."""
    speak_up = asyncio.Event()
    dropped = asyncio.Event()

    async def chatty(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(OK)
        await speak_up.wait()
        await peer.send(STALE)
        await peer.wait_for_hang_up()
        dropped.set()

    server = await raw_server(first_connection(chatty))
    async with HttpPool(limit=1, timeout_s=5) as pool:
        first = await pool.request(server.origin, get(), max_body_bytes=CAP)
        speak_up.set()
        async with asyncio.timeout(5):
            await dropped.wait()
        second = await pool.request(server.origin, get(), max_body_bytes=CAP)
    assert (first.body, second.body) == (b"ok", b"ok")
    assert server.connections == 2


async def test_a_cancelled_request_leaves_no_stale_answer_for_the_next(raw_server):
    """After a request is cancelled mid-wait, the next request gets its own answer, never the stale one."""
    slow_read = asyncio.Event()
    release = asyncio.Event()

    async def by_path(peer: Peer) -> None:
        while request := await peer.read_request():
            if request.startswith(b"GET /slow "):
                slow_read.set()
                await release.wait()
                await peer.send(STALE)
            else:
                await peer.send(OK)

    server = await raw_server(by_path)
    async with HttpPool(limit=1, timeout_s=5) as pool:
        slow = asyncio.create_task(
            pool.request(server.origin, get("/slow"), max_body_bytes=CAP)
        )
        await slow_read.wait()
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        release.set()
        got = await pool.request(server.origin, get("/fast"), max_body_bytes=CAP)
    assert got.body == b"ok"
    assert server.connections == 2


# --- closing ---------------------------------------------------------------------------------


async def test_after_close_requests_fail_and_idle_connections_are_closed(raw_server):
    """close() hangs up idle connections, and later requests fail with ConnectionLostError."""
    server = await raw_server(answering(OK))
    pool = HttpPool(limit=1, timeout_s=5)
    await pool.request(server.origin, get(), max_body_bytes=CAP)
    await pool.close()
    async with asyncio.timeout(5):  # the server's script ends once the client hangs up
        await server.peers[0].ended.wait()
    with pytest.raises(ConnectionLostError):
        await pool.request(server.origin, get(), max_body_bytes=CAP)
    assert server.connections == 1


async def test_a_request_queued_behind_the_limit_fails_once_the_pool_is_closed(
    raw_server,
):
    """A request waiting for a slot when close() is called fails; it opens no connection after close."""
    slow_read = asyncio.Event()

    async def slow_first(peer: Peer) -> None:
        await peer.read_request()
        slow_read.set()
        await peer.wait_for_hang_up()

    server = await raw_server(first_connection(slow_first))
    pool = HttpPool(limit=1, timeout_s=5)
    running = asyncio.create_task(
        pool.request(server.origin, get(), max_body_bytes=CAP)
    )
    await slow_read.wait()
    queued = asyncio.create_task(pool.request(server.origin, get(), max_body_bytes=CAP))
    await asyncio.sleep(0)  # let it reach the slot and wait there
    await pool.close()
    outcomes = await asyncio.gather(running, queued, return_exceptions=True)
    await pool.close()  # again: sweep up any connection opened after the first close
    assert isinstance(outcomes[0], ConnectionLostError)
    assert isinstance(outcomes[1], ConnectionLostError)
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


async def test_https_succeeds_when_the_ca_is_trusted(tls_server, ca):
    """With the server's CA in the pool's context, an https request is answered."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with HttpPool(limit=1, timeout_s=5, ssl_context=context) as pool:
        got = await pool.request(tls_server.origin, get("/tls"), max_body_bytes=CAP)
    assert (got.status, got.body) == (200, b"/tls")


@pytest.mark.parametrize("has_context", [True, False], ids=["own-context", "default"])
async def test_https_fails_with_a_tls_error_when_the_ca_is_unknown(
    tls_server, has_context
):
    """A certificate from a CA the pool does not trust gives TlsError, and nothing is sent."""
    context = ssl.create_default_context() if has_context else None
    async with HttpPool(limit=1, timeout_s=5, ssl_context=context) as pool:
        with pytest.raises(TlsError):
            await pool.request(tls_server.origin, get(), max_body_bytes=CAP)
    assert tls_server.peers == []


# --- building requests and origins ---------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\0b", "a\r\nX-Evil: 1"])
def test_header_block_refuses_line_breaks_and_nul(bad):
    """A header name or value holding CR, LF or NUL is refused with ValueError."""
    with pytest.raises(ValueError, match="line break or NUL"):
        header_block({"X-Test": bad})
    with pytest.raises(ValueError, match="line break or NUL"):
        header_block({bad: "value"})


def test_header_block_refuses_text_beyond_latin_1():
    """A header value outside Latin-1 is refused with ValueError, not sent mangled."""
    with pytest.raises(ValueError, match="latin-1"):
        header_block({"X-Test": "€"})


def test_header_block_and_request_line_build_crlf_lines():
    """The request line and each header end in CRLF, in the order given."""
    assert request_line("GET", "/a?b=1") == b"GET /a?b=1 HTTP/1.1\r\n"
    assert header_block({"A": "1", "B": "two"}) == b"A: 1\r\nB: two\r\n"


@pytest.mark.parametrize("target", ["/a\rb", "/a\nb", "/a\0b", "/a b"])
def test_request_line_refuses_line_breaks_nul_and_spaces(target):
    """A request target or method holding CR, LF, NUL or a space is refused with ValueError."""
    with pytest.raises(ValueError, match="method or target"):
        request_line("GET", target)
    with pytest.raises(ValueError, match="method or target"):
        request_line(f"GET{target[2:]}", "/")


@pytest.mark.parametrize(
    ("url", "is_tls", "host", "port", "host_header"),
    [
        ("http://example.com/api", False, "example.com", 80, b"example.com"),
        ("https://Example.COM", True, "example.com", 443, b"example.com"),
        ("http://example.com:80/", False, "example.com", 80, b"example.com"),
        ("https://example.com:443/", True, "example.com", 443, b"example.com"),
        ("http://127.0.0.1:8080/x", False, "127.0.0.1", 8080, b"127.0.0.1:8080"),
        ("https://api.test:8443/v1", True, "api.test", 8443, b"api.test:8443"),
        ("http://[::1]/", False, "::1", 80, b"[::1]"),
        ("https://[::1]:8443/api", True, "::1", 8443, b"[::1]:8443"),
    ],
)
def test_origin_of_parses_scheme_host_and_port(url, is_tls, host, port, host_header):
    """Origin.of gives TLS or not, the host, the default or explicit port and the Host header."""
    assert Origin.of(url) == Origin(is_tls, host, port, host_header)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "ws://example.com/", "example.com", "http:///path"]
)
def test_origin_of_refuses_other_schemes_and_missing_hosts(url):
    """A URL that is not http(s) with a host is refused with ValueError."""
    with pytest.raises(ValueError, match="not an http"):
        Origin.of(url)
