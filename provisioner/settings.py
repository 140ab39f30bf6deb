"""Frozen settings, built once at the edge (the command line, or :class:`provisioner.Provisioner`) and passed explicitly.

Defaults live here and only here; the manual's flag tables mirror them.
"""

from __future__ import annotations

import ipaddress
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from provisioner.errors import ConfigError
from provisioner.proxy import ProxyConfig
from provisioner.redact import Secret, redacted_url

try:
    VERSION = version("provisioner")
except PackageNotFoundError:  # pragma: no cover - only when run from a bare checkout
    VERSION = "0.0.0"
DEFAULT_API_URL = "https://openapi.qoder.sh/api/v1/cloud"
TOKEN_ENV = "QODER_PAT"  # noqa: S105 - the variable's name, not a token
API_URL_ENVS = ("QODER_API_URL", "QODER_BASE_URL")
#: The CA bundle variable of requests (and so of many Python tools).
CA_BUNDLE_ENV = "REQUESTS_CA_BUNDLE"
#: The update verbs of the doc generations: POST (the newest), PUT (the oldest).
UPDATE_METHODS = ("POST", "PUT")


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Where and how to reach the Environments API.

    Attributes:
        base_url: API base, e.g. ``https://api.qoder.com/api/v1/cloud``; no
            user name or password, query or fragment. Plain ``http://`` only to
            a loopback host (127.0.0.0/8, ``::1``, ``localhost``) unless
            ``allow_insecure_http``.
        token: the personal access token (``QODER_PAT``); shown as ``'***'``.
        timeout_s: per-request total timeout in seconds.
        ca_file: a PEM file of the CAs to trust instead of the system's store
            (``SSL_CERT_FILE``/``SSL_CERT_DIR``), as ``--ca-file`` or
            ``REQUESTS_CA_BUNDLE`` gave it.
        allow_insecure_http: allow plain ``http://`` to any host, with a warning.
        proxy: where a proxy may come from (explicit, or the environment).
        update_method: the verb of an update, ``POST`` (the newest docs) or
            ``PUT`` (the oldest); ``run --preflight`` sets it from what the
            target accepts.

    Raises:
        ConfigError: a URL that is malformed, carries credentials, or is plain
            http to a remote host without ``allow_insecure_http``; an unreadable
            ``ca_file``; a timeout that is not positive.
    """

    token: Secret
    base_url: str = DEFAULT_API_URL
    timeout_s: float = 30.0
    ca_file: str | None = None
    allow_insecure_http: bool = False
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    update_method: str = "POST"

    def __post_init__(self) -> None:
        if self.update_method not in UPDATE_METHODS:
            raise ConfigError(
                f"update_method must be POST or PUT, got {self.update_method!r}"
            )
        if self.timeout_s <= 0:
            raise ConfigError(f"--timeout must be positive, got {self.timeout_s}")
        if is_insecure_url(self.base_url):
            if not self.allow_insecure_http:
                host = _split_api_url(self.base_url).hostname
                raise ConfigError(
                    f"the API URL is plain http to {host}, which would send "
                    "the token unencrypted: use https, or pass --allow-insecure-http"
                )
            warnings.warn(
                "the API URL is plain http: the token will cross the network unencrypted",
                stacklevel=2,
            )
        if self.ca_file is not None:
            _check_readable(self.ca_file)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        api_url: str | None = None,
        token_file: str | None = None,
        timeout_s: float = 30.0,
        ca_file: str | None = None,
        allow_insecure_http: bool = False,
        proxy: str | None = None,
        proxy_source: str = "--proxy",
        token_hint: str = "",
    ) -> ApiSettings:
        """Build from flags and the environment: the token from a file or ``QODER_PAT``,
        the CA file from ``--ca-file`` or ``REQUESTS_CA_BUNDLE``, proxies from
        ``proxy`` or the proxy variables (see :mod:`provisioner.proxy`).
        ``token_hint`` ends the message for a missing token (``" (or use --sandbox)"``).

        Raises:
            ConfigError: no token, an unreadable token or CA file, a bad URL or
                proxy URL.
        """
        return cls(
            token=read_token(env, token_file, hint=token_hint),
            base_url=api_url_from_env(env, api_url),
            timeout_s=timeout_s,
            ca_file=ca_file or env.get(CA_BUNDLE_ENV) or None,
            allow_insecure_http=allow_insecure_http,
            proxy=ProxyConfig.from_env(
                env, explicit=proxy, explicit_source=proxy_source
            ),
        )


def _split_api_url(url: str) -> SplitResult:
    """``url`` split, or a ``ConfigError`` that never echoes a password."""
    # Quote the URL only when it cannot hold credentials.
    shown = f": {url!r}" if "@" not in url else ""
    if any(c <= " " or c == "\x7f" for c in url):
        raise ConfigError("API URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"API URL is malformed{shown}") from exc
    if "@" in url.partition("://")[2].split("/", 1)[0] or "@" in parts.netloc:
        raise ConfigError(
            "API URL must not contain a user name or password (before '@'): "
            f"the token comes from {TOKEN_ENV} or --token-file"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"API URL must start with http:// or https://{shown}")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ConfigError(f"API URL must not have a query or fragment{shown}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad or out-of-range port
    except ValueError as exc:
        raise ConfigError(f"API URL has a bad port{shown}") from exc
    return parts


def api_url_from_env(env: Mapping[str, str], api_url: str | None = None) -> str:
    """The API base URL: ``api_url``, else ``QODER_API_URL``/``QODER_BASE_URL``, else the default."""
    url = api_url or next((env[k] for k in API_URL_ENVS if env.get(k)), None)
    return (url or DEFAULT_API_URL).rstrip("/")


def is_insecure_url(url: str) -> bool:
    """Whether ``url`` is plain ``http://`` to a host that is not loopback.

    Raises:
        ConfigError: ``url`` is malformed or carries credentials.
    """
    parts = _split_api_url(url)
    return parts.scheme == "http" and not _is_loopback_host(parts.hostname)


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` is well formed, has no user info and names a loopback host.

    Loopback is 127.0.0.0/8, ``::1`` or ``localhost``; ``127.0.0.1.evil.example``,
    ``localhost.evil`` and ``127.0.0.1@evil.example`` are not.
    """
    try:
        parts = _split_api_url(url)
    except ConfigError:
        return False
    return _is_loopback_host(parts.hostname)


def _is_loopback_host(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _check_readable(path: str) -> None:
    if Path(path).is_dir():  # a c_rehash'ed directory, as REQUESTS_CA_BUNDLE allows
        return
    try:
        with Path(path).open("rb") as file:
            file.read(1)
    except OSError as exc:
        raise ConfigError(f"cannot read CA file {path}: {exc.strerror or exc}") from exc


def read_token(
    env: Mapping[str, str], token_file: str | None, *, hint: str = ""
) -> Secret:
    """The token from ``token_file`` if given, else from ``QODER_PAT`` (``hint`` ends the
    message when there is none)."""
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
        raise ConfigError(f"no API token: set {TOKEN_ENV} or pass --token-file{hint}")
    return Secret(value)


def _check_pacing(concurrency: int, rate_per_s: float, grace_s: float) -> None:
    """The rules ``run`` and ``worker`` share: concurrency, rate and grace period."""
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {concurrency}")
    if rate_per_s < 0:
        raise ConfigError(f"--rate must be 0 (unlimited) or more, got {rate_per_s}")
    if grace_s < 0:
        raise ConfigError(f"--grace must be 0 or more, got {grace_s}")
    if concurrency > 256:  # noqa: PLR2004 - a politeness threshold, documented
        warnings.warn(
            f"--concurrency {concurrency} is far above what the API recommends",
            stacklevel=3,
        )


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How a bulk run behaves.

    Attributes:
        concurrency: requests in flight at most.
        rate_per_s: requests per second at most; 0 means unlimited.
        adaptive_rate: find the server's limit instead (``--rate auto``).
        results_path: the result log (JSON Lines); ``-`` for stdout.
        summary_path: where to write the summary as JSON, if anywhere.
        salvage_path: where to write the specs that did not finish, as a JSONL
            job file, if anywhere; ``-`` for stdout.
        on_conflict: ``exists`` records a name conflict as ``exists``; ``fail`` as failed.
        skip_invalid: record invalid specs as ``invalid`` and go on, instead of refusing.
        resume: skip specs the result log already has as ``created`` or ``exists``.
        retry_failed: on resume, try again the specs the log has as ``failed``.
        grace_s: on SIGINT/SIGTERM, how long requests in flight may finish.
        progress_interval_s: off a terminal, seconds between ``run.progress`` events.
    """

    concurrency: int = 8
    rate_per_s: float = 20.0
    adaptive_rate: bool = False
    results_path: str = "results.jsonl"
    summary_path: str | None = None
    salvage_path: str | None = None
    on_conflict: Literal["exists", "fail"] = "exists"
    skip_invalid: bool = False
    resume: bool = True
    retry_failed: bool = True
    grace_s: float = 30.0
    progress_interval_s: float = 5.0

    def __post_init__(self) -> None:
        _check_pacing(self.concurrency, self.rate_per_s, self.grace_s)
        if not self.progress_interval_s > 0:
            raise ConfigError(
                f"--progress-interval must be above 0, got {self.progress_interval_s}"
            )

    @property
    def is_stdout_results(self) -> bool:
        """Whether the result log goes to stdout (no resume possible)."""
        return self.results_path == "-"


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_URL_ENV = "REDIS_URL"
#: URL schemes that name a node of a Redis Cluster (no detection needed).
CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where the queue lives and which part of it a worker is.

    Attributes:
        url: ``redis://`` or ``rediss://`` (TLS) URL; a password in it is never shown.
            ``redis+cluster://`` (``rediss+cluster://``) names a node of a Redis
            Cluster; a plain ``redis://`` node is asked whether it is one.
        password: from ``--redis-password-file`` (wins over one in the URL).
        stream: the queue's name; every key of it shares the hash tag ``{stream}``.
        group: the consumer group of the workers that share the stream.
        consumer: this worker's name in the group (unique per process).
        ca_file: a PEM file of the CAs to trust for ``rediss://`` (a private CA).
    """

    url: str = DEFAULT_REDIS_URL
    password: Secret | None = None
    stream: str = "provisioner"
    group: str = "provisioner"
    consumer: str = ""
    ca_file: str | None = None

    def __post_init__(self) -> None:
        scheme = self.url.partition("://")[0].lower()
        if scheme not in {"redis", "rediss", "unix", *CLUSTER_SCHEMES}:
            raise ConfigError(
                f"--redis must be a redis://, rediss://, redis+cluster:// or unix:// URL, not {redacted_url(self.url)!r}"
            )
        for what, value in (("--stream", self.stream), ("--group", self.group)):
            if not value or any(c in value for c in "{}\n\r ") or len(value) > 128:  # noqa: PLR2004
                raise ConfigError(
                    f"{what} must be 1-128 characters without spaces or braces, got {value!r}"
                )

    @property
    def shown_url(self) -> str:
        """The URL with any password masked, for messages and logs."""
        return redacted_url(self.url)

    @property
    def is_cluster(self) -> bool:
        """Whether the URL says Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
        return self.url.partition("://")[0].lower() in CLUSTER_SCHEMES

    @property
    def client_url(self) -> str:
        """The URL redis-py understands: without ``+cluster`` in its scheme."""
        scheme, sep, rest = self.url.partition("://")
        return f"{scheme.lower().removesuffix('+cluster')}{sep}{rest}"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        url: str | None = None,
        password_file: str | None = None,
        ca_file: str | None = None,
        **names: str,
    ) -> RedisSettings:
        """Build from flags and the environment: the URL from ``--redis`` or ``REDIS_URL``.

        Raises:
            ConfigError: a bad URL or name, or an unreadable password file.
        """
        password = None
        if password_file:
            password = Secret(_read_secret_file(password_file, "Redis password file"))
        return cls(
            url=url or env.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL,
            password=password,
            ca_file=ca_file,
            **names,
        )


def _read_secret_file(path: str, what: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if not value:
        raise ConfigError(f"{what} {path} is empty")
    return value


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
#: Outcomes are kept in whole UTC days, at least two: longer than the API's 24 h
#: idempotency window, so no spec is both forgotten here and forgotten there.
MIN_OUTCOME_DAYS, MAX_OUTCOME_DAYS = 2, 90


def _duration_s(text: str) -> float | None:
    """``90s``, ``15m``, ``36h``, ``7d`` in seconds; ``None`` when not a duration."""
    number, unit = text[:-1], text[-1:].lower()
    if unit not in _UNITS_S or not number.replace(".", "", 1).isdigit():
        return None
    return float(number) * _UNITS_S[unit]


@dataclass(frozen=True, slots=True)
class Trim:
    """How much of a stream Redis keeps: the newest ``count`` entries, or those younger
    than ``age_s``; neither keeps all. Trimming is approximate (``MAXLEN ~``/``MINID ~``):
    Redis drops whole nodes of about 100 entries, so a few more may stay."""

    count: int | None = None
    age_s: float | None = None

    @classmethod
    def parse(cls, text: str, flag: str) -> Trim:
        """``10000`` (entries), ``7d``/``36h``/``30m``/``90s`` (age) or ``all``."""
        value = text.strip().lower()
        if value == "all":
            return cls()
        if value.isdigit() and int(value) > 0:
            return cls(count=int(value))
        age = _duration_s(value)
        if age is None or age <= 0:
            raise ConfigError(
                f"{flag}: expected a number of entries (10000), an age (7d, 36h, 30m) "
                f"or 'all', got {text!r}"
            )
        return cls(age_s=age)

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return "all" if self.age_s is None else f"{self.age_s:g}s"


def outcome_days(text: str, flag: str = "--outcomes-retention") -> int:
    """``7d`` or ``48h`` as whole days (rounded up), between MIN and MAX_OUTCOME_DAYS."""
    age = _duration_s(text.strip())
    if age is None:
        raise ConfigError(
            f"{flag}: expected an age in days or hours (7d, 48h), got {text!r}"
        )
    days = -int(-age // 86_400)
    if not MIN_OUTCOME_DAYS <= days <= MAX_OUTCOME_DAYS:
        raise ConfigError(
            f"{flag}: outcomes are kept {MIN_OUTCOME_DAYS} to {MAX_OUTCOME_DAYS} days "
            f"(longer than the API's 24 h idempotency window), got {text!r}"
        )
    return days


@dataclass(frozen=True, slots=True)
class QueueRetention:
    """What a queue keeps in Redis, so a long-lived queue's memory stays bounded.

    Attributes:
        results: the results stream's trim (``--results-retention``).
        dead_letters: the dead-letter stream's trim (``--dead-letters-retention``).
        outcome_days: days a settled success stays known (``--outcomes-retention``):
            a spec queued again within them is ``exists`` without a request.
    """

    results: Trim = Trim(count=10_000)
    dead_letters: Trim = Trim(count=10_000)
    outcome_days: int = 7

    def __post_init__(self) -> None:
        if not MIN_OUTCOME_DAYS <= self.outcome_days <= MAX_OUTCOME_DAYS:
            raise ConfigError(
                f"--outcomes-retention must be {MIN_OUTCOME_DAYS} to "
                f"{MAX_OUTCOME_DAYS} days, got {self.outcome_days}"
            )


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a queue worker behaves (the API side is shared with ``run``).

    Attributes:
        concurrency: specs in progress at most.
        rate_per_s: with ``adaptive_rate`` off, requests per second for the whole
            pool (shared through Redis); 0 = unlimited.
        adaptive_rate: the pool finds the server's limit, learning one rate together
            through Redis (``--rate auto``, the worker's default).
        claim_idle_s: a message unacknowledged this long is taken over from its worker.
        max_deliveries: deliveries of one message before it is dead-lettered.
        exit_when_empty: stop once the stream is drained and nothing is pending.
        grace_s: on SIGINT/SIGTERM, how long specs in progress may finish.
        results_path: also append every record to this JSON Lines file.
        poll_s: the longest a read waits for new messages (and for a stop to be seen).
        progress_interval_s: off a terminal, seconds between ``worker.progress`` events.
        retention: what the queue keeps in Redis (results, dead letters, outcomes).
    """

    concurrency: int = 8
    rate_per_s: float = 20.0
    adaptive_rate: bool = True
    claim_idle_s: float = 60.0
    max_deliveries: int = 5
    exit_when_empty: bool = False
    grace_s: float = 30.0
    results_path: str | None = None
    poll_s: float = 0.5
    progress_interval_s: float = 5.0
    retention: QueueRetention = field(default_factory=QueueRetention)

    def __post_init__(self) -> None:
        _check_pacing(self.concurrency, self.rate_per_s, self.grace_s)
        if not self.progress_interval_s > 0:
            raise ConfigError(
                f"--progress-interval must be above 0, got {self.progress_interval_s}"
            )
        if self.claim_idle_s <= 0:
            raise ConfigError(f"--claim-idle must be positive, got {self.claim_idle_s}")
        if self.max_deliveries < 1:
            raise ConfigError(
                f"--max-deliveries must be at least 1, got {self.max_deliveries}"
            )


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Where ``run`` and ``worker`` serve ``/metrics``, ``/healthz`` and ``/readyz``.

    Attributes:
        port: the TCP port (``--metrics-port``); 0 picks a free one.
        host: the address to bind (``--metrics-host``); every interface by
            default, as exporters do, so a container can be scraped.
        probe_timeout_s: the longest ``/readyz`` and a scrape wait for Redis.
    """

    port: int
    host: str = "0.0.0.0"  # noqa: S104 - an exporter is scraped from outside; --metrics-host narrows it
    probe_timeout_s: float = 2.0


@dataclass(frozen=True, slots=True)
class LastRunSettings:
    """Where ``run`` leaves its series when it ends, for a scheduled run nobody scrapes.

    Attributes:
        textfile_path: a file for node_exporter's textfile collector
            (``--metrics-textfile``), replaced atomically; it should end in ``.prom``.
        pushgateway_url: a Prometheus Pushgateway (``--pushgateway``), pushed to
            with ``PUT`` so that the group holds this run alone.
        pushgateway_job: the ``job`` grouping key there (``--pushgateway-job``).
        push_timeout_s: the longest the push may take.
    """

    textfile_path: str | None = None
    pushgateway_url: str | None = None
    pushgateway_job: str = "provisioner-run"
    push_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        path = self.textfile_path
        if path is not None and not path.endswith(".prom"):
            warnings.warn(
                f"--metrics-textfile {path}: node_exporter reads only files ending in .prom",
                stacklevel=2,
            )
        url = self.pushgateway_url
        if url is not None and urlsplit(url).scheme not in {"http", "https"}:
            raise ConfigError(
                f"--pushgateway must be an http:// or https:// URL, got {redacted_url(url)!r}"
            )
