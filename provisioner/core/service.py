"""The public way to provision: :class:`Provisioner`, which every command drives too.

One :class:`Provisioner` is one API client on one aiohttp session sized to the
concurrency, one rate limiter, one stop controller and one meter; ``run``,
``worker``, ``plan`` and the teardown commands all open one, so they talk to the
API in exactly the same way. From your own asyncio code::

    async with Provisioner(api_url=URL, token=TOKEN, concurrency=8, rate=20) as p:
        summary = await p.run(bodies, results="results.jsonl")
        record = await p.provision(body)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import structlog

from provisioner.api.client import ApiClient, open_session
from provisioner.core.outcome import OnConflict
from provisioner.core.pipeline import Pipeline
from provisioner.core.runner import Runner
from provisioner.core.salvage import Salvage
from provisioner.core.summary import Summary, utcnow
from provisioner.errors import ConfigError, ProvisionerError, SpecError
from provisioner.observe.meter import NO_METER, Meter
from provisioner.pacing.choice import make_limiter
from provisioner.pacing.limiter import RateLimiter
from provisioner.pacing.retry import RetryBudget, RetryPolicy
from provisioner.pacing.stopping import StopController
from provisioner.pacing.tolerance import MaxFailures
from provisioner.redact import Scrubber, Secret
from provisioner.results import (
    Result,
    ResultSink,
    ResumeState,
    new_run_id,
    prepare_resume,
    read_log,
    set_aside,
)
from provisioner.results.lock import LogLock
from provisioner.settings import TOKEN_ENV, ApiSettings, RunSettings
from provisioner.spec import InvalidSpec, Spec, build_spec

#: The ``source`` of a body handed to :meth:`Provisioner.run` or ``provision``.
BODIES_SOURCE = "<bodies>"
log = structlog.get_logger("provisioner.engine")


@dataclass(frozen=True, slots=True)
class ProvisionerConfig:
    """How to reach the API and how hard to try.

    Attributes:
        api: the API's URL, token, timeout, TLS and proxy settings.
        policy: the retry policy of every request.
        concurrency: requests in flight at most (sizes the connection pool).
        on_conflict: a name that exists already is ``exists`` or ``failed``.
        update: environments that exist with another description, config or
            metadata are updated in place (``run --update``).
        target: what records name as their API; the base URL when ``None``.
        run_id: what the pipeline's records name as their run (a command's, a
            worker process's); ``None``: the result sink fills it in, if it knows one.
        max_failures: a file run stops starting specs once its failures that
            retrying cannot fix are past this (``--max-failures``); ``None``: never.
    """

    api: ApiSettings
    policy: RetryPolicy
    concurrency: int
    on_conflict: OnConflict = "exists"
    update: bool = False
    target: str | None = None
    run_id: str | None = None
    max_failures: MaxFailures | None = None

    @property
    def target_name(self) -> str:
        """What records name as their API: ``target``, else the base URL."""
        return self.target or self.api.base_url


class Provisioner:
    """Creates environments: one at a time (:meth:`provision`) or in bulk (:meth:`run`).

    Use it as an async context manager; the connection pool lives until exit.

    Args:
        api_url: the API base URL; default ``QODER_API_URL``/``QODER_BASE_URL``
            from ``env``, else the public API.
        token: the personal access token; default ``QODER_PAT`` from ``env``.
        concurrency: requests in flight at most.
        rate: requests per second at most: ``0`` unlimited, ``"auto"`` learnt from
            the API's 429s. Default 20, the API's suggested rate.
        policy: the retry policy (attempts, deadline, backoff).
        timeout_s: each request's deadline, connecting included.
        on_conflict: a name that exists already (made by someone else) is
            ``"exists"`` or ``"fail"``.
        update: converge environments that exist with another description,
            config or metadata (``run --update``).
        ca_file: a PEM file (or directory) of the CAs to trust.
        proxy: an HTTP(S) proxy URL, ``"none"`` for direct; default the proxy
            variables of ``env`` (``HTTPS_PROXY``, ``NO_PROXY``...).
        env: the environment variables to read (default ``os.environ``).
        max_failures: each :meth:`run` stops starting bodies once more than this
            many failed in a way retrying cannot fix: a count (``3``) or a share
            of those finished (``"5%"``), as ``--max-failures``; ``None``: never.
            ``summary.stop`` then says why.

    Raises:
        ConfigError: no token, a bad URL, an impossible setting.
    """

    def __init__(
        self,
        *,
        api_url: str | None = None,
        token: str | Secret | None = None,
        concurrency: int = 8,
        rate: float | Literal["auto"] = 20.0,
        policy: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        on_conflict: OnConflict = "exists",
        update: bool = False,
        ca_file: str | None = None,
        proxy: str | None = None,
        env: Mapping[str, str] | None = None,
        max_failures: int | str | None = None,
    ) -> None:
        env = dict(os.environ if env is None else env)
        if token is not None:
            env[TOKEN_ENV] = token.reveal() if isinstance(token, Secret) else token
        api = ApiSettings.from_env(
            env,
            api_url=api_url,
            timeout_s=timeout_s,
            ca_file=ca_file,
            proxy=proxy,
            proxy_source="proxy=",
        )
        adaptive = rate == "auto"
        run = RunSettings(  # checks concurrency and rate as the flags are checked
            concurrency=concurrency,
            rate_per_s=0.0 if adaptive else float(rate),
            adaptive_rate=adaptive,
            on_conflict=on_conflict,
        )
        config = ProvisionerConfig(
            api=api,
            policy=policy or RetryPolicy(),
            concurrency=run.concurrency,
            on_conflict=run.on_conflict,
            update=update,
            max_failures=_tolerance(max_failures),
        )
        limiter = make_limiter(run.rate_per_s, adaptive=run.adaptive_rate)
        self._setup(config, limiter=limiter, stop=StopController(grace_s=run.grace_s))

    @classmethod
    def from_config(
        cls,
        config: ProvisionerConfig,
        *,
        limiter: RateLimiter,
        stop: StopController,
        meter: Meter = NO_METER,
        replay_is_ours: bool = False,
    ) -> Provisioner:
        """A provisioner from settings the caller built (the command line does).

        Args:
            limiter: paces every request (a queue's workers share one in Redis).
            stop: the drain and grace period of the caller's signals.
            meter: counts requests and records (``--metrics-port``).
            replay_is_ours: a replayed create answer comes from an earlier try of
                this very job (a resumed log, a redelivered message).
        """
        self = cls.__new__(cls)
        self._setup(
            config,
            limiter=limiter,
            stop=stop,
            meter=meter,
            replay_is_ours=replay_is_ours,
        )
        return self

    def _setup(
        self,
        config: ProvisionerConfig,
        *,
        limiter: RateLimiter,
        stop: StopController,
        meter: Meter = NO_METER,
        replay_is_ours: bool = False,
    ) -> None:
        self.config = config
        self.limiter = limiter
        self.stop = stop
        self._meter = meter
        self._replay_is_ours = replay_is_ours
        self._scrub = Scrubber([config.api.token.reveal()])
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: ApiClient | None = None
        self._pipelines: dict[bool, Pipeline] = {}

    async def __aenter__(self) -> Provisioner:
        """Open the connection pool."""
        api = self.config.api
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(
                open_session(
                    concurrency=self.config.concurrency,
                    timeout_s=api.timeout_s,
                    ca_file=api.ca_file,
                )
            )
            self._client = ApiClient(session, settings=api)
            if self._client.proxy is not None:
                proxy = self._client.proxy
                log.info("proxy.selected", proxy=proxy.url, source=proxy.source)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the connection pool."""
        stack, self._stack, self._client = self._stack, None, None
        self._pipelines.clear()
        if stack is not None:
            await stack.aclose()

    @property
    def client(self) -> ApiClient:
        """The API client (inside ``async with`` only)."""
        if self._client is None:
            raise RuntimeError("use the Provisioner inside `async with`")
        return self._client

    @property
    def pipeline(self) -> Pipeline:
        """The per-spec pipeline every driver hands its specs to."""
        return self._pipeline(replay_is_ours=self._replay_is_ours)

    def _pipeline(self, *, replay_is_ours: bool) -> Pipeline:
        if replay_is_ours not in self._pipelines:
            self._pipelines[replay_is_ours] = Pipeline(
                client=self.client,
                policy=self.config.policy,
                budget=RetryBudget(),
                limiter=self.limiter,
                stop=self.stop,
                target=self.config.target_name,
                on_conflict=self.config.on_conflict,
                replay_is_ours=replay_is_ours,
                update=self.config.update,
                meter=self._meter,
                run_id=self.config.run_id,
            )
        return self._pipelines[replay_is_ours]

    async def provision(self, body: Mapping[str, Any]) -> Result:
        """Create one environment (or find the one this body made before).

        Returns the record: ``status`` is ``created``, ``exists``, ``updated``
        or ``failed`` (``error`` says why), ``id`` the environment's id.

        Raises:
            SpecError: the body breaks a rule of the create body (nothing is sent).
            ProvisionerError: the provisioner is stopping.
        """
        spec = build_spec(dict(body), source=BODIES_SOURCE)
        if isinstance(spec, InvalidSpec):
            raise SpecError(spec.reason, source=BODIES_SOURCE)
        result = await self.pipeline.provision(spec)
        if result is None:
            raise ProvisionerError("the provisioner is stopping: nothing was recorded")
        return result

    async def run(
        self,
        bodies: Iterable[Mapping[str, Any]],
        *,
        results: str | None = None,
        resume: bool = True,
        retry_failed: bool = True,
        on_result: Callable[[Result], None] | None = None,
    ) -> Summary:
        """Create an environment for every body; record each outcome.

        Bodies are checked first and held in memory (for job files of any size,
        use the command line); an invalid body or a repeated name is recorded
        ``invalid`` and not sent. With ``results``, each record is appended to
        that result log as it finishes, and, with ``resume``, bodies an earlier
        run of the same log already settled are skipped (``summary.skipped``);
        without it, an earlier log is moved aside to ``<results>.<UTC time>``.
        Each call is a run of its own: a fresh ``run_id`` is in every record it
        writes and bound to every log event it emits.

        Raises:
            LockedError: another run holds the result log.
            ResultLogError: the result log cannot be read.
        """
        specs = _specs_of(bodies)
        run_id = new_run_id()
        with contextlib.ExitStack() as stack:
            stack.enter_context(structlog.contextvars.bound_contextvars(run_id=run_id))
            state = ResumeState(done={})
            if results is not None:
                stack.enter_context(LogLock(results, command="Provisioner.run"))
                state = self._resume(results, specs, resume, retry_failed=retry_failed)
            sink = ResultSink.open(
                results or os.devnull, scrub=self._scrub, run_id=run_id
            )
            stack.callback(sink.close)
            return await self.run_specs(
                specs, sink=sink, resume=state, on_result=on_result
            )

    def _resume(
        self,
        path: str,
        specs: list[Spec | InvalidSpec],
        resume: bool,
        *,
        retry_failed: bool,
    ) -> ResumeState:
        if not resume:
            set_aside(path, now=utcnow())  # a fresh log, the old one kept beside it
            return ResumeState(done={})
        keys = {s.name: s.key for s in specs if isinstance(s, Spec)}
        names = {s.name for s in specs if s.name is not None}
        return prepare_resume(
            path,
            read_log(path, target=self.config.target_name),
            target=self.config.target_name,
            input_names=names,
            input_keys=keys,
            retry_failed=retry_failed,
            redo_drifted=self.config.update,
        )

    async def run_specs(
        self,
        items: Iterable[Spec | InvalidSpec],
        *,
        sink: ResultSink,
        resume: ResumeState | None = None,
        on_result: Callable[[Result], None] | None = None,
        salvage: Salvage | None = None,
    ) -> Summary:
        """Run checked specs (a job file's, in order) into ``sink``: the file driver.

        ``salvage`` receives every spec that did not finish (``run --salvage``).
        """
        resume = resume or ResumeState(done={})
        self.stop.restart()  # an earlier call's failure limit does not carry over
        runner = Runner(
            pipeline=self._pipeline(
                replay_is_ours=self._replay_is_ours or resume.log_existed
            ),
            stop=self.stop,
            sink=sink,
            concurrency=self.config.concurrency,
            target=self.config.target_name,
            resume=resume,
            on_result=on_result,
            meter=self._meter,
            salvage=salvage,
            max_failures=self.config.max_failures,
        )
        return await runner.run(items)


def _tolerance(limit: int | str | None) -> MaxFailures | None:
    """``max_failures=`` as a limit: a count, or a text as ``--max-failures`` takes."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int | str):
        raise ConfigError(
            f"max_failures: expected a count or a percentage, got {limit!r}"
        )
    if isinstance(limit, int):
        return MaxFailures(count=limit)
    return MaxFailures.parse(limit, flag="max_failures")


def _specs_of(bodies: Iterable[Mapping[str, Any]]) -> list[Spec | InvalidSpec]:
    """Each body checked, a repeated name invalid at its second use."""
    specs: list[Spec | InvalidSpec] = []
    first: dict[str, int] = {}
    for index, body in enumerate(bodies):
        name = body.get("name") if isinstance(body, Mapping) else None
        earlier = first.setdefault(name, index) if isinstance(name, str) else index
        duplicate = f"{BODIES_SOURCE}#{earlier}" if earlier != index else None
        specs.append(
            build_spec(
                dict(body) if isinstance(body, Mapping) else body,
                source=BODIES_SOURCE,
                index=index,
                duplicate_of=duplicate,
            )
        )
    return specs


__all__ = ["BODIES_SOURCE", "Provisioner", "ProvisionerConfig"]
