"""The queue mode's Redis Streams adapter: with :mod:`~provisioner.queue.pace`, all that knows Redis.

Key layout of a queue named ``<stream>`` (see :func:`queue_keys`)::

    provisioner:{<stream>}:specs     stream of queued specs, read by a consumer group;
                                     settled entries are acknowledged and deleted
    provisioner:{<stream>}:results   stream of result records, one field ``record``
    provisioner:{<stream>}:dead      stream of dead letters: the message's fields plus
                                     message_id, reason, deliveries, dead_at
    provisioner:{<stream>}:outcomes:<YYYY-MM-DD>
                                     hash per UTC day: spec_key -> {"id", "status"} of
                                     its first success; expires the outcome retention
                                     after the day ends (``:outcomes``: 0.1.0's one hash)
    provisioner:{<stream>}:rate      the shared rate limiter's state (a GCRA time, in µs)
    provisioner:{<stream>}:pace      hash: the pool's adaptive rate (``--rate auto``), its
                                     CUBIC state and recent answers (see adaptive.py)
    provisioner:{<stream>}:failures  hash: the pool's ``--max-failures`` tally, ``failed``
                                     (failures retrying cannot fix) and ``finished``
                                     (records published), counted by the settle script
                                     until ``queue-status --reset-failures``

Every key shares the hash tag ``{<stream>}``, so the whole queue lives in one
slot of a Redis Cluster: each Lua script and pipeline touches that slot only.
The results and dead-letter streams are trimmed as they grow (:class:`QueueRetention`),
so a long-lived queue's memory stays bounded.
:meth:`JobQueue.open` asks the node it is given whether it belongs to a cluster
(``INFO cluster``; ``redis+cluster://`` says so without asking) and then uses
redis-py's cluster client, which follows MOVED/ASK and a failover. Redis exceptions never leave this module: they
become :class:`~provisioner.errors.QueueError`, whose message shows the URL
with its password masked. The client must speak RESP2 (redis-py's default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any, TypeVar

import orjson
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    ClusterError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from provisioner.errors import QueueError
from provisioner.queue.pace import PoolPace, RedisClient
from provisioner.queue.scripts import (
    DEAD_LETTER_LUA,
    LOOKUP_LUA,
    RELEASE_LUA,
    REPLAY_LUA,
    SETTLE_LUA,
)
from provisioner.redact import MASK, without_password
from provisioner.results.record import rfc3339
from provisioner.settings import MAX_OUTCOME_DAYS, QueueRetention, RedisSettings, Trim

T = TypeVar("T")
KEY_PREFIX = "provisioner"
KEY_NAMES = ("specs", "results", "dead", "outcomes", "rate", "pace", "failures")
#: The fields a dead letter adds to the message's own.
LETTER_FIELDS = ("message_id", "reason", "deliveries", "dead_at")
# ConnectionError covers BusyLoadingError; OSError covers socket and asyncio timeouts;
# a cluster in a failover is waited out too: no master for a slot (CLUSTERDOWN,
# TRYAGAIN), redirections that outlast the client's TTL ("TTL exhausted"), a demoted
# master that now answers READONLY, no reachable node (RedisClusterException).
_CONNECTION_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterDownError,
    ClusterError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
)
# Subclasses of ConnectionError that waiting will not fix.
_REFUSALS = (AuthenticationError, AuthorizationError)


@dataclass(frozen=True, slots=True)
class Message:
    """One queued spec as delivered to a consumer.

    Attributes:
        id: the stream entry id (``<ms>-<seq>``).
        fields: the entry's fields, decoded: ``spec`` (the JSON body), ``key``,
            ``source``, ``name``, ``enqueued_at``.
        deliveries: how often the entry was delivered: 1 on first delivery,
            Redis's delivery counter for a claimed one.
    """

    id: str
    fields: dict[str, str]
    deliveries: int


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    """One consumer of the group: messages it holds, seconds since it was seen."""

    name: str
    pending: int
    idle_s: float


@dataclass(frozen=True, slots=True)
class FailureTally:
    """The pool's ``--max-failures`` count: ``failed`` (failures retrying cannot fix)
    of ``finished`` (records published), since the queue began or was last reset."""

    failed: int = 0
    finished: int = 0


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """A snapshot of one queue.

    Attributes:
        stream: the queue's name.
        length: entries in the specs stream (queued or in flight).
        pending: entries delivered to the group and not yet settled.
        consumers: the group's consumers.
        results: entries in the results stream.
        dead_letters: entries in the dead-letter stream.
        settled: spec keys in the outcome buckets (successes settled within the
            outcome retention).
        pool_rate_per_s: the pool's adaptive rate (``--rate auto``), if one is learnt.
        failures: the pool's ``--max-failures`` tally, with ``finished``.
    """

    stream: str
    length: int
    pending: int
    consumers: tuple[ConsumerInfo, ...]
    results: int
    dead_letters: int
    settled: int
    pool_rate_per_s: float | None = None
    failures: FailureTally = FailureTally()

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as plain JSON-ready data."""
        return {**asdict(self), "consumers": [asdict(c) for c in self.consumers]}


@dataclass(frozen=True, slots=True)
class Settled:
    """What :meth:`JobQueue.settle_batch` did: each message's published record
    (``None``: settled already) and the pool's tally after the batch."""

    written: list[bytes | None]
    tally: FailureTally


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of the dead-letter stream.

    Attributes:
        id: the dead letter's own entry id (``<ms>-<seq>``).
        fields: the original message's fields, exactly as it was queued.
        message_id: the message's entry id in the specs stream.
        reason: why it was dead-lettered.
        deliveries: how often it had been delivered.
        dead_at: when, RFC 3339.
    """

    id: str
    fields: dict[str, str]
    message_id: str
    reason: str
    deliveries: int
    dead_at: str

    def matches(self, reason: str | None) -> bool:
        """Whether its reason contains ``reason``, any case (``None`` matches all)."""
        return reason is None or reason.casefold() in self.reason.casefold()

    def to_dict(self) -> dict[str, Any]:
        """The dead letter as plain JSON-ready data."""
        return asdict(self)


def queue_keys(stream: str) -> dict[str, str]:
    """The Redis keys of the queue ``stream``, by role (see the module docstring)."""
    return {name: f"{KEY_PREFIX}:{{{stream}}}:{name}" for name in KEY_NAMES}


def outcome_keys(stream: str, days: int, today: date) -> list[str]:
    """The outcome buckets a lookup reads, newest first: one hash per UTC day, from
    tomorrow (a clock running ahead) back ``days`` days, then the single hash that
    version 0.1.0 kept (read, never written: it goes when deleted by hand)."""
    buckets = [
        f"{KEY_PREFIX}:{{{stream}}}:outcomes:{today - timedelta(days=back)}"
        for back in range(-1, days + 1)
    ]
    return [*buckets, queue_keys(stream)["outcomes"]]


def _expiry(today: date, days: int) -> int:
    """When today's bucket expires (Unix seconds): ``days`` after the day ends."""
    end = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
    return int((end + timedelta(days=days)).timestamp())


def _trim_args(trim: Trim) -> list[EncodableT]:
    """The scripts' (kind, limit) pair for ``trim``."""
    if trim.count is not None:
        return ["count", trim.count]
    if trim.age_s is not None:
        return ["age", int(trim.age_s * 1000)]
    return ["", 0]


@dataclass(frozen=True, slots=True)
class Settlement:
    """One message's end, for :meth:`JobQueue.settle_many`.

    Attributes:
        message_id: the message's entry id.
        spec_key: its spec's idempotency key.
        record: the result record to publish (JSON).
        exists_record: for a success, the record to publish instead when another
            delivery of the spec settled first; ``None`` for a failure.
        outcome: for a success, what the outcome bucket remembers (compact JSON:
            ``{"id", "status"}``).
        is_permanent: a failure retrying cannot fix: the pool's tally counts it.
    """

    message_id: str
    spec_key: str
    record: bytes
    exists_record: bytes | None = None
    outcome: bytes = b""
    is_permanent: bool = False

    def args(self) -> list[EncodableT]:
        is_success = self.exists_record is not None
        return [self.message_id, self.spec_key, self.record, int(is_success),
                self.exists_record or b"", self.outcome, int(self.is_permanent)]  # fmt: skip


def compact_outcome(record: bytes) -> bytes:
    """What an outcome bucket keeps of a success record: its id and status."""
    data = orjson.loads(record)
    return orjson.dumps({"id": data.get("id"), "status": data.get("status")})


class JobQueue:
    """The queue ``stream`` on one redis-py client; every method may raise QueueError.

    Args:
        client: a ``redis.asyncio.Redis`` or ``RedisCluster`` with ``decode_responses=False``.
        stream: the queue's name (the hash tag of its keys).
        shown_url: how messages name the server; by default its host, port and db.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        stream: str,
        shown_url: str | None = None,
        retention: QueueRetention | None = None,
    ) -> None:
        self._client = client
        self._stream = stream
        self.retention = retention or QueueRetention()
        self._keys = queue_keys(stream)
        pool_kwargs = _connection_kwargs(client)
        self._shown_url = shown_url or _describe(pool_kwargs)
        password = pool_kwargs.get("password")
        self._secrets = (password,) if isinstance(password, str) and password else ()
        self._cursors: dict[str, str] = {}
        self._settle = client.register_script(SETTLE_LUA)
        self._dead_letter = client.register_script(DEAD_LETTER_LUA)
        self._lookup = client.register_script(LOOKUP_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._replay = client.register_script(REPLAY_LUA)

    @classmethod
    def connect(
        cls, settings: RedisSettings, *, retries: int = 8, cluster: bool | None = None
    ) -> JobQueue:
        """A queue on a new client for ``settings`` (no I/O until the first call).

        ``rediss://`` uses TLS, verified against ``settings.ca_file`` when given,
        else the system's CAs (``SSL_CERT_FILE`` works). A password in ``settings.password`` wins over one
        in the URL. A command that meets a connection error or timeout is tried
        again up to ``retries`` times, waiting 0.2 s doubling to 5 s between.
        ``cluster`` (default: ``settings.is_cluster``) picks redis-py's
        ``RedisCluster``, which finds the other nodes from the one named.
        """
        url, options = _client_options(settings, retries)
        use_cluster = settings.is_cluster if cluster is None else cluster
        try:
            client: RedisClient = (
                RedisCluster.from_url(url, **options)
                if use_cluster
                else redis.asyncio.Redis.from_url(url, **options)
            )
        except (ValueError, RedisClusterException) as exc:
            raise QueueError(
                f"Redis URL {settings.shown_url} is malformed or cannot name a cluster: {exc}",
                is_connection=False,
            ) from exc
        return cls(client, stream=settings.stream, shown_url=settings.shown_url)

    @classmethod
    async def open(cls, settings: RedisSettings, *, retries: int = 8) -> JobQueue:
        """:meth:`connect`, a cluster client when the node says ``cluster_enabled:1``.

        A ``redis+cluster://`` URL skips the question; so does ``unix://``
        (redis-py's cluster client speaks TCP only). A node that cannot be
        reached (after ``retries``) is taken for a plain server, whose commands
        then wait it out or fail as before; a refusal (a wrong password) raises.
        """
        if settings.is_cluster or settings.url.lower().startswith("unix:"):
            return cls.connect(settings, retries=retries)
        probe = cls.connect(settings, retries=retries, cluster=False)
        try:
            cluster = await probe.is_cluster_node()
        except QueueError as exc:
            if not exc.is_connection:
                raise
            cluster = False
        finally:
            await probe.close()
        return cls.connect(settings, retries=retries, cluster=cluster)

    async def is_cluster_node(self) -> bool:
        """Whether the server is a node of a Redis Cluster (``INFO cluster``)."""
        with self._errors("ask whether it is a cluster node"):
            try:
                info = await self._client.info("cluster")
            except ResponseError:
                return False  # INFO refused (an ACL, a proxy): a plain server
        return str(info.get("cluster_enabled", 0)) == "1"

    @property
    def is_cluster(self) -> bool:
        """Whether the queue speaks to a Redis Cluster."""
        return isinstance(self._client, RedisCluster)

    @property
    def stream(self) -> str:
        """The queue's name."""
        return self._stream

    async def close(self) -> None:
        """Close the client and its connections."""
        with self._errors("close the connection"):
            await self._client.aclose()

    async def ping(self) -> None:
        """Check that Redis answers (and accepts the credentials)."""
        with self._errors("ping"):
            await self._client.ping()

    async def add(
        self, entries: Iterable[Mapping[str, str]], *, batch: int = 500
    ) -> int:
        """Append ``entries`` to the specs stream, ``batch`` per round trip; return the count."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        added, pending = 0, iter(entries)
        with self._errors("add specs to the queue"):
            while chunk := list(islice(pending, batch)):
                async with self._client.pipeline(transaction=False) as pipe:
                    for entry in chunk:
                        fields: dict[FieldT, EncodableT] = dict(entry.items())
                        pipe.xadd(self._keys["specs"], fields)
                    await pipe.execute()
                added += len(chunk)
        return added

    async def ensure_group(self, group: str) -> None:
        """Create ``group`` on the specs stream (and the stream) unless it exists."""
        with self._errors(f"create the consumer group {group}"):
            try:
                await self._client.xgroup_create(
                    self._keys["specs"], group, id="0", mkstream=True
                )
            except ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

    async def read(
        self, group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[Message]:
        """Up to ``count`` new messages for ``consumer``, waiting up to ``block_ms`` ms.

        ``block_ms=0`` returns at once (unlike Redis's ``BLOCK 0``); keep it below
        the client's socket timeout (30 s from :meth:`connect`). A vanished group
        (Redis restarted without persistence) is created again and ``[]`` returned.
        """
        with self._errors("read from the queue"):
            reply = await self._in_group(
                group,
                self._client.xreadgroup(
                    group,
                    consumer,
                    {self._keys["specs"]: ">"},
                    count=count,
                    block=block_ms or None,
                ),
            )
        return [
            Message(_text(mid), _fields(fields), 1)
            for mid, fields in _entries(reply)
            if fields is not None
        ]

    async def claim(
        self, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[Message]:
        """Take over up to ``count`` messages idle for ``min_idle_ms`` ms or more.

        Successive calls walk the pending list (the cursor stays on this object,
        per group, and starts over when Redis reports the end). ``deliveries`` is
        Redis's delivery count. Entries deleted meanwhile are acknowledged and skipped.
        """
        specs = self._keys["specs"]
        with self._errors("claim stalled messages"):
            reply = await self._in_group(
                group,
                self._client.xautoclaim(
                    specs, group, consumer, min_idle_ms,
                    self._cursors.get(group, "0-0"), count=count,
                ),
            )  # fmt: skip
            if reply is None:
                return []
            cursor, claimed, *rest = reply
            self._cursors[group] = _text(cursor)
            gone = [*(rest[0] if rest else []), *(m for m, f in claimed if f is None)]
            if gone:
                await self._client.xack(specs, group, *gone)
            live = {_text(mid): _fields(f) for mid, f in claimed if f is not None}
            counts = await self._deliveries(group, list(live))
        return [
            Message(mid, f, counts[mid]) for mid, f in live.items() if mid in counts
        ]

    async def _in_group(self, group: str, command: Awaitable[T]) -> T | None:
        """``command``'s reply; ``None`` after creating ``group`` again if it vanished."""
        try:
            return await command
        except ResponseError as exc:
            if not _is_nogroup(exc):
                raise
        await self.ensure_group(group)
        return None

    async def _deliveries(self, group: str, ids: list[str]) -> dict[str, int]:
        """Delivery counts of the pending ``ids`` (an id settled meanwhile is absent)."""
        if not ids:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for mid in ids:
                pipe.xpending_range(self._keys["specs"], group, mid, mid, 1)
            replies: list[list[dict[str, Any]]] = await pipe.execute()
        return {
            _text(row["message_id"]): int(row["times_delivered"])
            for rows in replies
            for row in rows
        }

    def _buckets(self, days: int | None = None) -> list[str]:
        """The outcome buckets, newest first (today's is the second)."""
        today = datetime.now(UTC).date()
        return outcome_keys(self._stream, days or self.retention.outcome_days, today)

    async def outcomes(self, spec_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The remembered outcome of each settled spec key, in one round trip."""
        if not spec_keys:
            return {}
        with self._errors("read outcomes"):
            found = await self._lookup(keys=self._buckets(), args=list(spec_keys))
        return {
            key: orjson.loads(value)
            for key, value in zip(spec_keys, found, strict=True)
            if value is not None
        }

    async def outcome(self, spec_key: str) -> dict[str, Any] | None:
        """The remembered outcome (``id``, ``status``) of ``spec_key``, or ``None``."""
        return (await self.outcomes([spec_key])).get(spec_key)

    async def settle_many(
        self, group: str, settlements: Sequence[Settlement]
    ) -> list[bytes | None]:
        """:meth:`settle_batch`'s records only."""
        return (await self.settle_batch(group, settlements)).written

    async def settle_batch(
        self, group: str, settlements: Sequence[Settlement]
    ) -> Settled:
        """Publish each message's record and remove the message: one script call,
        each message settled atomically as :meth:`settle` describes.

        The results stream is trimmed to ``retention.results`` as it grows; a
        success's outcome goes to today's bucket, which expires
        ``retention.outcome_days`` after the day ends. The pool's failure tally
        counts each record published, and each failure retrying cannot fix.
        """
        if not settlements:
            return Settled([], await self.failure_tally())
        today = datetime.now(UTC).date()
        days = self.retention.outcome_days
        buckets = outcome_keys(self._stream, days, today)
        args: list[EncodableT] = [group, *_trim_args(self.retention.results)]
        args.append(_expiry(today, days))
        for settlement in settlements:
            args += settlement.args()
        # today's bucket first after the tally: the script writes to KEYS[4]
        keys = [self._keys["specs"], self._keys["results"], self._keys["failures"]]
        keys += [buckets[1], buckets[0], *buckets[2:]]
        with self._errors("settle messages"):
            written, failed, finished = await self._settle(keys=keys, args=args)
        return Settled(
            [None if w is None else bytes(w) for w in written],
            FailureTally(int(failed), int(finished)),
        )

    async def failure_tally(self) -> FailureTally:
        """The pool's ``--max-failures`` tally (zeros before the first settle)."""
        with self._errors("read the failure count"):
            failed, finished = await self._client.hmget(
                self._keys["failures"], ["failed", "finished"]
            )
        return FailureTally(int(failed or 0), int(finished or 0))

    async def reset_failures(self) -> None:
        """Start the pool's ``--max-failures`` tally again from zero."""
        with self._errors("reset the failure count"):
            await self._client.delete(self._keys["failures"])

    async def settle(
        self,
        message_id: str,
        group: str,
        *,
        spec_key: str,
        record: bytes,
        exists_record: bytes | None,
    ) -> bytes | None:
        """Publish a message's result and remove the message, in one atomic step.

        For a success (``exists_record`` given) the spec key's outcome is
        remembered, unless another delivery of the same spec settled first: then
        ``exists_record`` is published instead, so a spec is never ``created``
        twice. A failure (``exists_record=None``) leaves the outcomes alone.
        Returns the record published, or ``None`` when the message had been
        settled already (a retry of this call whose reply was lost, or another
        worker that took the message over): nothing is published twice.
        """
        outcome = b"" if exists_record is None else compact_outcome(record)
        settlement = Settlement(message_id, spec_key, record, exists_record, outcome)
        [written] = await self.settle_many(group, [settlement])
        return written

    async def dead_letter(
        self,
        message_id: str,
        group: str,
        *,
        fields: Mapping[str, str],
        reason: str,
        deliveries: int,
    ) -> None:
        """Move a message to the dead-letter stream with ``reason``, atomically
        (the stream trimmed to ``retention.dead_letters``)."""
        letter = {
            **fields,
            "message_id": message_id,
            "reason": reason,
            "deliveries": str(deliveries),
            "dead_at": rfc3339(datetime.now(UTC)),
        }
        pairs: list[EncodableT] = [item for pair in letter.items() for item in pair]
        trim = _trim_args(self.retention.dead_letters)
        with self._errors("dead-letter a message"):
            await self._dead_letter(
                keys=[self._keys["specs"], self._keys["dead"]],
                args=[group, message_id, *trim, *pairs],
            )

    async def release(self, message: Message, group: str) -> str | None:
        """Queue ``message`` again at the stream's end and drop this delivery, in one
        atomic step (a worker that stops before sending its request); the new entry
        id, or ``None`` when it was settled already."""
        pairs: list[EncodableT] = [i for pair in message.fields.items() for i in pair]
        with self._errors("give a message back"):
            new_id = await self._release(
                keys=[self._keys["specs"]], args=[group, message.id, *pairs]
            )
        return None if new_id is None else _text(new_id)

    def pace(self) -> PoolPace:
        """The worker pool's shared pace on this queue's client (``--rate``)."""
        return PoolPace(self._client, keys=self._keys, errors=self._errors)

    async def is_drained(self, group: str) -> bool:
        """Whether nothing is left: no entry in the specs stream, none pending."""
        status = await self.status(group)
        return status.length == 0 and status.pending == 0

    async def status(self, group: str) -> QueueStatus:
        """Lengths, pending messages and consumers; a missing stream or group counts 0."""
        keys = self._keys
        with self._errors("read the queue status"):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.xlen(keys["specs"])
                pipe.xpending(keys["specs"], group)
                pipe.xinfo_consumers(keys["specs"], group)
                pipe.xlen(keys["results"])
                pipe.xlen(keys["dead"])
                pipe.hget(keys["pace"], "rate")
                pipe.hmget(keys["failures"], ["failed", "finished"])
                for bucket in self._buckets(MAX_OUTCOME_DAYS):
                    pipe.hlen(bucket)
                replies = await pipe.execute(raise_on_error=False)
            length, summary, consumers, results, dead, rate, tally, *buckets = (
                _missing_as(reply, None) for reply in replies
            )
            settled = sum(int(n or 0) for n in buckets)
        return QueueStatus(
            stream=self._stream,
            length=int(length),
            pending=int(summary["pending"]) if summary else 0,
            consumers=tuple(
                ConsumerInfo(_text(c["name"]), int(c["pending"]), int(c["idle"]) / 1000)
                for c in consumers or ()
            ),
            results=int(results),
            dead_letters=int(dead),
            settled=int(settled),
            pool_rate_per_s=None if rate is None else round(float(rate), 1),
            failures=FailureTally(*(int(n or 0) for n in tally or (0, 0))),
        )

    async def results(self, *, count: int = 10_000) -> list[dict[str, Any]]:
        """The first ``count`` records of the results stream, decoded."""
        with self._errors("read the results"):
            entries = await self._client.xrange(self._keys["results"], count=count)
        return [
            orjson.loads(fields[b"record"])
            for _, fields in entries or ()
            if fields and b"record" in fields
        ]

    async def dead_letters(self, *, count: int = 10_000) -> list[dict[str, str]]:
        """The first ``count`` dead letters, their fields decoded."""
        with self._errors("read the dead letters"):
            entries = await self._client.xrange(self._keys["dead"], count=count)
        return [_fields(fields) for _, fields in entries or () if fields is not None]

    async def delete_all(self) -> None:
        """Delete every key of this queue (and nothing else)."""
        with self._errors("delete the queue"):
            keys = {*self._keys.values(), *self._buckets(MAX_OUTCOME_DAYS)}
            await self._client.delete(*keys)

    async def find_dead_letters(
        self, *, reason: str | None = None, limit: int | None = None, page: int = 500
    ) -> list[DeadLetter]:
        """Dead letters oldest first: those whose reason contains ``reason`` (any
        case), at most ``limit``; read ``page`` entries per round trip."""
        found: list[DeadLetter] = []
        start = "-"
        with self._errors("read the dead letters"):
            while limit is None or len(found) < limit:
                entries: list[Any] = (
                    await self._client.xrange(self._keys["dead"], min=start, count=page)
                    or []
                )
                found += [d for d in map(_letter, entries) if d.matches(reason)]
                if len(entries) < page:
                    break
                start = "(" + _text(entries[-1][0])
        return found[:limit]

    async def find_dead_letter(self, entry_id: str) -> DeadLetter | None:
        """The dead letter whose entry id is ``entry_id``, or ``None``."""
        with self._errors("read a dead letter"):
            entries = await self._client.xrange(
                self._keys["dead"], min=entry_id, max=entry_id, count=1
            )
        return _letter(entries[0]) if entries else None

    async def replay_dead_letter(self, letter: DeadLetter) -> str | None:
        """Queue ``letter``'s original fields (its key too) again and remove the letter.

        One atomic step: the new entry id, or ``None`` (nothing written) when the
        letter is gone already (replayed or purged meanwhile).
        """
        pairs: list[EncodableT] = [i for pair in letter.fields.items() for i in pair]
        if not pairs:
            raise ValueError(f"dead letter {letter.id} has no fields to queue")
        with self._errors("replay a dead letter"):
            new_id = await self._replay(
                keys=[self._keys["specs"], self._keys["dead"]],
                args=[letter.id, *pairs],
            )
        return None if new_id is None else _text(new_id)

    async def purge_dead_letters(self, entry_ids: Sequence[str]) -> int:
        """Delete the dead letters ``entry_ids``; return how many there were."""
        deleted = 0
        with self._errors("purge dead letters"):
            for start in range(0, len(entry_ids), 500):
                chunk = entry_ids[start : start + 500]
                deleted += int(await self._client.xdel(self._keys["dead"], *chunk))
        return deleted

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate redis-py and socket errors raised inside into QueueError."""
        try:
            yield
        except (RedisError, RedisClusterException, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            for secret in self._secrets:
                detail = detail.replace(secret, MASK)
            is_connection = isinstance(exc, _CONNECTION_ERRORS) and not isinstance(
                exc, _REFUSALS
            )
            raise QueueError(
                f"Redis at {self._shown_url}: cannot {action}: {detail}",
                is_connection=is_connection,
            ) from exc


def _is_nogroup(exc: ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


def _missing_as(reply: Any, default: Any) -> Any:
    """A pipeline reply, ``default`` for a missing stream or group; errors raise."""
    if isinstance(reply, ResponseError) and (
        _is_nogroup(reply) or str(reply).startswith("no such key")
    ):
        return default
    if isinstance(reply, Exception):
        raise reply
    return reply


def _entries(reply: Any) -> list[Any]:
    """The entries of an XREADGROUP reply (RESP2: ``[[stream, entries], ...]``)."""
    return [entry for _, entries in reply or () for entry in entries]


def _text(value: bytes | str | int) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _fields(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(name): _text(value) for name, value in fields.items()}


def _letter(entry: Any) -> DeadLetter:
    """A dead letter from an XRANGE entry: its own fields apart from the message's."""
    entry_id, raw = entry
    fields = _fields(raw or {})
    meta = {name: fields.pop(name, "") for name in LETTER_FIELDS}
    deliveries = meta["deliveries"]
    return DeadLetter(
        id=_text(entry_id),
        fields=fields,
        message_id=meta["message_id"],
        reason=meta["reason"],
        deliveries=int(deliveries) if deliveries.isdigit() else 0,
        dead_at=meta["dead_at"],
    )


def _client_options(
    settings: RedisSettings, retries: int
) -> tuple[str, dict[str, Any]]:
    """The URL redis-py is given and its keywords, for either client."""
    url, password = settings.client_url, settings.password
    options: dict[str, Any] = {
        "decode_responses": False,
        "health_check_interval": 10,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "retry": Retry(ExponentialBackoff(cap=5, base=0.1), retries=retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if settings.ca_file is not None and url.lower().startswith("rediss://"):
        options["ssl_ca_certs"] = settings.ca_file
    if password is not None:
        # redis-py lets a password in the URL override the keyword.
        url, options["password"] = without_password(url), password.reveal()
    return url, options


def _connection_kwargs(client: RedisClient) -> Mapping[str, Any]:
    """The keywords of a client's connections (a cluster's: of every node's)."""
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes()
        where = {"host": nodes[0].host, "port": nodes[0].port} if nodes else {}
        return {**client.connection_kwargs, **where}
    return client.connection_pool.connection_kwargs


def _describe(kwargs: Mapping[str, Any]) -> str:
    """Where a client points, from its pool's keywords: never the password."""
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
