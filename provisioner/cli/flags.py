"""The ``provisioner`` command line: every flag, its environment variable and default.

One table (:data:`FLAGS`, with :data:`COMMAND_FLAGS` naming each command's) says, for each flag, its environment
variable, how a value is checked and its default (taken from the settings
dataclasses, where defaults live). A value from the environment goes through the
same check as one from argv, and a bad one of either is a usage error: one line
naming the flag or the variable, exit 2. Long options are never abbreviated
(``--token`` is not ``--token-file``), and an unknown option is named without
echoing any value given with it (it may be a secret).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any, NoReturn
from urllib.parse import urlsplit

from provisioner.errors import ConfigError
from provisioner.pacing.retry import RetryPolicy
from provisioner.pacing.tolerance import MIN_SAMPLE, MaxFailures
from provisioner.proxy import DIRECT, has_password
from provisioner.redact import redacted_url
from provisioner.settings import (
    DEFAULT_REDIS_URL,
    REDIS_URL_ENV,
    VERSION,
    ApiSettings,
    LastRunSettings,
    MetricsSettings,
    QueueRetention,
    RedisSettings,
    RunSettings,
    Trim,
    WorkerSettings,
    outcome_days,
)

USAGE_EXIT = 2
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "console", "json")
ON_CONFLICT = ("exists", "fail")
SANDBOX_RESULTS = "results.sandbox.jsonl"
#: A path of ``-``: stdin for what a command reads, stdout for what it writes.
STDIO = "-"
AUTO_RATE = "auto"
MAX_PORT = 65535
COMPLETION_SHELLS = ("bash", "zsh")
DEAD_LETTER_ACTIONS = ("list", "show", "replay", "purge")
DOCTOR_DESCRIPTION = (
    "Check the target before a bulk run writes anything, one line per check (ok, "
    "warn or fail): the URL's scheme (plain http to a remote host fails), the proxy "
    "the API URL goes through (and NO_PROXY), the CA trusted, the token (401/403), "
    "the base URL (and its docs generation), the clock against the server's Date, "
    "the rate headers, the update verb (POST or PUT) and the networking.type "
    "spellings accepted. Every request changes nothing: a list of one environment; "
    "an update of an id that cannot exist (404: the verb is accepted, 405: it is "
    "not); and, per spelling, a create whose metadata is invalid, so that the "
    "server refuses it (at config.networking: the spelling is refused; at "
    "metadata: accepted). Should a server create one anyway, doctor archives it at "
    "once and says so. Each probe is sent once, never retried; the token is never "
    "shown. Exit 0 when no check fails (warnings included), 1 when one does, 2 for "
    "a usage error."
)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_UNKNOWN = "unrecognized arguments: "

Convert = Callable[[str], Any]


class UsageError(Exception):
    """A flag or environment variable with an impossible value."""


class _Parser(argparse.ArgumentParser):
    """Errors are one line on stderr and exit 2; values are never echoed for unknown options.

    An error names the help of the command it is about (``provisioner plan --help``),
    even for the arguments argparse leaves over for the top-level parser to refuse.
    """

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> argparse.Namespace:
        parsed: argparse.Namespace
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self._commands().get(getattr(parsed, "command", None) or "")
            (command or self).error(_UNKNOWN + " ".join(extras))
        return parsed

    def _commands(self) -> dict[str, argparse.ArgumentParser]:
        for action in self._actions:
            # argparse has no public accessor for its subcommands' parsers.
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    def error(self, message: str) -> NoReturn:
        if message.startswith(_UNKNOWN):
            words = message.removeprefix(_UNKNOWN).split()
            message = _unknown_message(
                words, has_token_file="--token-file" in self._option_string_actions
            )
        self.exit(
            USAGE_EXIT, f"provisioner: error: {message} (see {self.prog} --help)\n"
        )


def _unknown_message(words: Sequence[str], *, has_token_file: bool) -> str:
    options = [w.split("=", 1)[0] for w in words if w.startswith("-")]
    # A command that sends no request (enqueue, report) takes no token at all.
    if has_token_file and any(o in {"--token", "--pat", "--api-key"} for o in options):
        return (
            "the token is never a command-line value (it would show in ps): "
            "set QODER_PAT or use --token-file"
        )
    if not options:
        return f"unexpected argument ({len(words)} given)"
    return "unknown option " + ", ".join(dict.fromkeys(options))


def _default(cls: Any, name: str) -> Any:
    """The dataclass default of ``cls.name``."""
    for f in fields(cls):
        if f.name == name and f.default is not MISSING:
            return f.default
    raise KeyError(name)


# --- value checks, the same for argv and the environment ---------------------


def _number(kind: type, minimum: float, *, strict: bool = False) -> Convert:
    """A finite int or float at least ``minimum`` (above it when ``strict``)."""
    bound = f"{'above' if strict else 'at least'} {minimum:g}"

    def convert(text: str) -> Any:
        try:
            value = kind(text.strip())
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        too_small = value <= minimum if strict else value < minimum
        if not math.isfinite(value) or too_small:
            raise argparse.ArgumentTypeError(f"expected {bound}, got {text!r}")
        return value

    return convert


def _port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: any free one)."""
    value: int = _number(int, 0)(text)
    if value > MAX_PORT:
        raise argparse.ArgumentTypeError(
            f"expected a port up to {MAX_PORT}, got {text!r}"
        )
    return value


def _rate(text: str) -> float | str:
    """A rate in requests per second, or ``auto``."""
    if text.strip().lower() == AUTO_RATE:
        return AUTO_RATE
    value: float = _number(float, 0)(text)
    return value


class _Choice:
    """One of ``choices``, any case; the choices stay readable (shell completion lists them)."""

    def __init__(self, choices: Sequence[str]) -> None:
        self.choices = tuple(choices)

    def __call__(self, text: str) -> str:
        value = text.strip().lower()
        if value not in self.choices:
            raise argparse.ArgumentTypeError(
                f"expected one of {', '.join(self.choices)}, got {text!r}"
            )
        return value


def _choice(options: Sequence[str]) -> Convert:
    return _Choice(options)


def _name(text: str) -> str:
    value = text.strip()
    if not value:
        raise argparse.ArgumentTypeError("expected a name, got an empty value")
    return value


def _path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty value")
    return text


def _file(text: str) -> str:
    """A path that must name a file: ``-`` (stdin or stdout) cannot stand for it."""
    if text.strip() == STDIO:
        raise argparse.ArgumentTypeError(
            "expected a file, got - (stdin and stdout are for job files, result logs "
            "and summaries; this flag needs a file)"
        )
    return _path(text)


def _proxy(text: str) -> str:
    value = text.strip()
    if not value:
        raise argparse.ArgumentTypeError(
            f"expected a proxy URL (http://host:port) or {DIRECT}, got an empty value"
        )
    return value


def _proxy_on_argv(text: str) -> str:
    # Whatever is on the command line shows in `ps` to every user of the host.
    if has_password(text):
        raise argparse.ArgumentTypeError(
            "the proxy URL holds a password, which would show in ps: put it in "
            "PROVISIONER_PROXY or a file named by --proxy-file"
        )
    return _proxy(text)


def _url(text: str) -> str:
    value = text.strip()
    try:
        has_host = bool(urlsplit(value).hostname)
    except ValueError:
        has_host = False
    if not value.startswith(("http://", "https://")) or not has_host:
        raise argparse.ArgumentTypeError(
            f"expected an http:// or https:// URL, got {redacted_url(value)!r}"
        )
    return value


def _url_on_argv(text: str) -> str:
    # Whatever is on the command line shows in `ps` to every user of the host.
    if has_password(text):
        raise argparse.ArgumentTypeError(
            "the URL holds a password, which would show in ps: put it in "
            "PROVISIONER_PUSHGATEWAY"
        )
    return _url(text)


def _switch(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(
        f"expected 1/0, true/false or yes/no, got {text!r}"
    )


@dataclass(frozen=True, slots=True)
class Flag:
    """One flag of ``run``: how it is spelt, checked, defaulted and explained."""

    name: str  # --kebab-case
    convert: Convert | None  # None: an on/off switch
    default: Any
    help: str
    metavar: str | None = None
    negatable: bool = False  # --flag / --no-flag
    envs: tuple[str, ...] = ()  # variables other than PROVISIONER_<FLAG>, in order
    argv_convert: Convert | None = None  # a stricter check for argv (no secrets there)

    @property
    def dest(self) -> str:
        """The attribute on the parsed namespace."""
        return self.name.removeprefix("--").replace("-", "_")

    @property
    def env(self) -> str:
        """The ``PROVISIONER_*`` environment variable that sets it."""
        return "PROVISIONER_" + self.dest.upper()

    @property
    def env_names(self) -> tuple[str, ...]:
        """Every variable that sets it, the first found wins."""
        return self.envs or (self.env,)


def _checked(parse: Callable[[str, str], Any], flag: str) -> Convert:
    """``parse(text, flag)``, its ConfigError as argparse's error (the flag named once)."""

    def convert(text: str) -> Any:
        try:
            return parse(text, flag)
        except ConfigError as exc:
            message = str(exc).removeprefix(f"{flag}: ")
            raise argparse.ArgumentTypeError(message) from None

    return convert


def _positive(kind: type) -> Convert:
    return _number(kind, 0, strict=True)


FLAGS: dict[str, Flag] = {flag.name: flag for flag in (
    Flag("--sandbox", None, False, "run against an emulator started in-process, with a throwaway token"),
    Flag("--sandbox-faults", str, None, "with --sandbox: the emulator's faults, e.g. error_503=0.05,reset_after_commit=0.02,latency_ms=20,seed=7", "LIST"),
    Flag("--token-file", _file, None, "read the token from this file instead of $QODER_PAT", "PATH"),
    Flag("--ca-file", _file, None, "trust the CA certificates in this PEM file (a private CA); $SSL_CERT_FILE works too", "PATH"),
    Flag("--proxy", _proxy, None, f"send API requests through this proxy (http://host:port; https goes through CONNECT); {DIRECT} = connect directly, whatever HTTPS_PROXY says. A password belongs in PROVISIONER_PROXY or --proxy-file, never here (default: HTTPS_PROXY/HTTP_PROXY/ALL_PROXY, less NO_PROXY)", "URL", argv_convert=_proxy_on_argv),
    Flag("--proxy-file", _file, None, "read the proxy URL, which may hold user:password@, from this file", "PATH"),
    Flag("--allow-insecure-http", None, False, "allow a plain http:// API URL that is not loopback (sends the token unencrypted)"),
    Flag("--concurrency", _number(int, 1), _default(RunSettings, "concurrency"), "requests in flight at most (default %(default)s)", "N"),
    Flag("--rate", _rate, _default(RunSettings, "rate_per_s"), "requests per second at most (for a worker: shared by every worker of the stream); 0 = unlimited; auto = find the server's limit (a worker's pool learns it together) (default %(default)s)", "R"),
    Flag("--timeout", _positive(float), _default(ApiSettings, "timeout_s"), "seconds per request (default %(default)s)", "S"),
    Flag("--max-attempts", _number(int, 1), _default(RetryPolicy, "max_attempts"), "attempts per request, the first included (default %(default)s)", "N"),
    Flag("--deadline", _positive(float), _default(RetryPolicy, "deadline_s"), "seconds after a spec's first attempt when no new attempt starts (default %(default)s)", "S"),
    Flag("--backoff", _number(float, 0), _default(RetryPolicy, "wait_initial_s"), "seconds before the first retry; doubles each time, less up to 25%% jitter (default %(default)s)", "S"),
    Flag("--backoff-max", _number(float, 0), _default(RetryPolicy, "wait_max_s"), "longest backoff between attempts, in seconds (default %(default)s)", "S"),
    Flag("--max-failures", _checked(MaxFailures.parse, "--max-failures"), None, f"stop starting specs once more than N specs failed in a way retrying cannot fix (a 4xx; not 5xx, resets or 429), or more than N%% of those finished (judged from {MIN_SAMPLE} on); a worker counts the whole pool's, in Redis; 0 stops at the first (default: never)", "N|N%"),
    Flag("--grace", _number(float, 0), _default(RunSettings, "grace_s"), "seconds in-flight requests may finish after SIGINT/SIGTERM (default %(default)s)", "S"),
    Flag("--results", _path, None, f"result log, JSON Lines; - for stdout (run: default {_default(RunSettings, 'results_path')}, with --sandbox {SANDBOX_RESULTS}; worker: none; archive/delete: default FROM with .archive.jsonl/.delete.jsonl for .jsonl; plan: none, else read for its forecast and resume)", "PATH"),
    Flag("--summary", _path, None, "also write the run summary as JSON to this file; - for stdout", "PATH"),
    Flag("--salvage", _path, None, "when the run ends, write every spec that did not finish (failed, interrupted, not started) to this JSONL job file, atomically; provisioner run FILE retries exactly those; - for stdout", "PATH"),
    Flag("--skip-invalid", None, False, "record invalid specs as 'invalid' and run the rest"),
    Flag("--on-conflict", _choice(ON_CONFLICT), _default(RunSettings, "on_conflict"), "a name that already exists is 'exists' or a failure (default %(default)s)", "{exists,fail}"),
    Flag("--resume", None, _default(RunSettings, "resume"), "skip specs the result log already has as created/exists for this API (default on)", negatable=True),
    Flag("--retry-failed", None, _default(RunSettings, "retry_failed"), "on resume, try failed specs again (default on)", negatable=True),
    Flag("--log-format", _choice(LOG_FORMATS), "auto", "console on a terminal, JSON otherwise (default %(default)s)", "{auto,console,json}"),
    Flag("--log-level", _choice(LOG_LEVELS), "info", "debug, info, warning or error (default %(default)s)", "LEVEL"),
    Flag("--no-progress", None, False, "no progress bar on a terminal, no progress events elsewhere"),
    Flag("--progress-interval", _positive(float), _default(RunSettings, "progress_interval_s"), "off a terminal, seconds between progress log events (run.progress, worker.progress) (default %(default)s)", "S"),
    Flag("--redis", _path, None, f"Redis URL, redis:// or rediss:// (TLS) (default {DEFAULT_REDIS_URL}; also $REDIS_URL)", "URL", envs=("PROVISIONER_REDIS", REDIS_URL_ENV)),
    Flag("--redis-password-file", _file, None, "read the Redis password from this file", "PATH"),
    Flag("--redis-ca-file", _file, None, "trust the CA certificates in this PEM file for rediss:// (a private CA)", "PATH"),
    Flag("--stream", _name, _default(RedisSettings, "stream"), "the queue's name (default %(default)s)", "NAME"),
    Flag("--group", _name, _default(RedisSettings, "group"), "the consumer group of the workers (default %(default)s)", "NAME"),
    Flag("--consumer", _name, None, "this worker's name in the group (default HOST-PID)", "NAME"),
    Flag("--claim-idle", _positive(float), _default(WorkerSettings, "claim_idle_s"), "seconds a message may stay unacknowledged before another worker takes it over (default %(default)s)", "S"),
    Flag("--max-deliveries", _number(int, 1), _default(WorkerSettings, "max_deliveries"), "deliveries of one message before it goes to the dead letters (default %(default)s)", "N"),
    Flag("--exit-when-empty", None, False, "stop once the stream is drained and nothing is pending (one-shot tasks)"),
    Flag("--results-retention", _checked(Trim.parse, "--results-retention"), _default(QueueRetention, "results"), "what the results stream keeps: the newest N records, those younger than an age (7d, 36h, 30m), or all (default %(default)s)", "N|AGE"),
    Flag("--dead-letters-retention", _checked(Trim.parse, "--dead-letters-retention"), _default(QueueRetention, "dead_letters"), "what the dead-letter stream keeps, as --results-retention (default %(default)s)", "N|AGE"),
    Flag("--outcomes-retention", _checked(outcome_days, "--outcomes-retention"), _default(QueueRetention, "outcome_days"), "how long a settled spec stays known, so queuing it again sends nothing: whole days (7d, 48h), 2 to 90 (default %(default)s days)", "AGE"),
    Flag("--reset-failures", None, False, "set the pool's count of --max-failures back to 0 (workers it stopped can start again), then print the status"),
    Flag("--format", _choice(("text", "json")), "text", "text or json (default %(default)s)", "{text,json}"),
    Flag("--update", None, False, "update environments that exist with another description, config or metadata in place (same id); without it, that drift is only reported"),
    Flag("--detailed-exitcode", None, False, "exit 2 when the plan has changes (0: none, 1: error), as terraform plan does"),
    Flag("--from", _file, None, "the result log of the run whose environments to tear down (required)", "RESULTS"),
    Flag("--include-existing", None, False, "also act on environments the run found already there (exists, updated), not only those it created"),
    Flag("--into", _file, None, "the result log to record the environments found in (required; appended to, locked and compacted as run's)", "RESULTS"),
    Flag("--include-archived", None, False, "also record archived environments (as exists, archived); by default they are skipped"),
    Flag("--yes", None, False, "do not ask for confirmation (needed without a terminal)"),
    Flag("--reason", _name, None, "only the dead letters whose reason contains this text, any case (default: all)", "TEXT"),
    Flag("--limit", _number(int, 1), None, "at most this many dead letters, oldest first (default: all)", "N"),
    Flag("--metrics-port", _port, None, "serve Prometheus /metrics, /healthz and /readyz on this port; 0 picks a free one (default: off)", "PORT"),
    Flag("--metrics-host", _name, _default(MetricsSettings, "host"), "the address --metrics-port listens on (default %(default)s, every interface)", "HOST"),
    Flag("--metrics-textfile", _file, None, "when the run ends, write its series to this file for node_exporter's textfile collector (atomically; name it *.prom)", "PATH"),
    Flag("--pushgateway", _url, None, "when the run ends, push its series to this Prometheus Pushgateway (http://host:9091); a user:password@ belongs in PROVISIONER_PUSHGATEWAY, never here", "URL", argv_convert=_url_on_argv),
    Flag("--pushgateway-job", _name, _default(LastRunSettings, "pushgateway_job"), "the job label of the --pushgateway group (default %(default)s)", "NAME"),
    Flag("--preflight", None, False, "first run provisioner doctor's checks against the API; a failed check stops the run before anything is sent but the checks' probes (exit 1), and an update learnt to be PUT only is sent with PUT"),
    Flag("--html", _path, None, "also write a self-contained HTML report with charts to this file; - for stdout, in place of the summary", "PATH"),
)}  # fmt: skip

_API = (
    "--token-file", "--ca-file", "--proxy", "--proxy-file", "--allow-insecure-http",
    "--concurrency", "--rate",
    "--timeout", "--max-attempts", "--deadline", "--backoff", "--backoff-max", "--grace",
    "--on-conflict", "--log-format", "--log-level",
)  # fmt: skip
_REDIS = ("--redis", "--redis-password-file", "--redis-ca-file", "--stream")
_TEARDOWN = (
    "--from", "--results", "--include-existing", "--yes", "--token-file", "--ca-file",
    "--proxy", "--proxy-file", "--allow-insecure-http", "--concurrency", "--rate", "--timeout", "--max-attempts",
    "--deadline", "--backoff", "--backoff-max", "--grace", "--log-format", "--log-level",
    "--format",
)  # fmt: skip
COMMAND_FLAGS: dict[str, tuple[str, ...]] = {
    "run": ("--sandbox", "--sandbox-faults", *_API, "--results", "--summary", "--salvage",
            "--skip-invalid", "--resume", "--retry-failed", "--no-progress",
            "--progress-interval", "--update", "--max-failures", "--metrics-port", "--metrics-host",
            "--metrics-textfile", "--pushgateway", "--pushgateway-job", "--preflight"),
    "plan": ("--token-file", "--ca-file", "--proxy", "--proxy-file",
             "--allow-insecure-http", "--concurrency", "--rate", "--results", "--timeout",
             "--max-attempts", "--deadline", "--backoff", "--backoff-max",
             "--log-format", "--log-level", "--format", "--detailed-exitcode"),
    "import": ("--into", "--include-archived", "--token-file", "--ca-file", "--proxy",
               "--proxy-file", "--allow-insecure-http", "--rate", "--timeout",
               "--max-attempts", "--deadline", "--backoff", "--backoff-max",
               "--log-format", "--log-level", "--format"),
    "doctor": ("--token-file", "--ca-file", "--proxy", "--proxy-file",
               "--allow-insecure-http", "--rate", "--timeout",
               "--log-format", "--log-level", "--format"),
    "validate": ("--format",),
    "enqueue": (*_REDIS, "--log-format", "--log-level", "--format"),
    "worker": (*_REDIS, "--group", "--consumer", "--claim-idle", "--max-deliveries",
               "--exit-when-empty", "--results-retention", "--dead-letters-retention",
               "--outcomes-retention", "--results", *_API, "--max-failures",
               "--metrics-port", "--metrics-host",
               "--progress-interval", "--format"),
    "queue-status": (*_REDIS, "--group", "--format", "--reset-failures"),
    "dead-letters": (*_REDIS, "--reason", "--limit", "--format", "--yes"),
    "report": ("--format", "--html"),
    "archive": _TEARDOWN,
    "delete": _TEARDOWN,
}  # fmt: skip


#: Defaults that differ by command, each taken from that command's settings.
_COMMAND_DEFAULTS: dict[tuple[str, str], Any] = {
    # A pool learns the server's limit together unless told a rate.
    ("worker", "--rate"): AUTO_RATE
    if _default(WorkerSettings, "adaptive_rate")
    else _default(WorkerSettings, "rate_per_s"),
}


def flag_default(command: str, flag: Flag) -> Any:
    """What ``flag`` is for ``command`` when neither argv nor the environment sets it."""
    return _COMMAND_DEFAULTS.get((command, flag.name), flag.default)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_flag(parser: argparse.ArgumentParser, command: str, flag: Flag) -> None:
    # argparse's own %(default)s would show None: the real default is applied later.
    shown = _shown(flag_default(command, flag))
    text = (
        f"{flag.help.replace('%(default)s', shown)} [env {' or '.join(flag.env_names)}]"
    )
    if flag.convert is None:
        action: Any = argparse.BooleanOptionalAction if flag.negatable else "store_true"
        parser.add_argument(flag.name, action=action, default=None, help=text)
        return
    parser.add_argument(
        flag.name,
        type=flag.argv_convert or flag.convert,
        default=None,
        metavar=flag.metavar,
        help=text,
    )


def _add_api_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-url",
        default=None,
        help=f"API base URL (env QODER_API_URL or QODER_BASE_URL; default {_default(ApiSettings, 'base_url')})",
    )


def _add_command(
    sub: Any,
    command: str,
    *,
    jobs: bool,
    api: bool,
    summary: str,
    description: str,
) -> None:
    parser = sub.add_parser(
        command, help=summary, description=description, allow_abbrev=False
    )
    if jobs:
        parser.add_argument(
            "jobs",
            nargs="+",
            metavar="JOB",
            help="job files (.jsonl, .json, .yaml, .csv); - reads JSONL from stdin",
        )
    if api:
        _add_api_url(parser)
    for name in COMMAND_FLAGS[command]:
        _add_flag(parser, command, FLAGS[name])


def resolve_env(args: argparse.Namespace, env: Mapping[str, str]) -> set[str]:
    """Fill every flag not given on the command line from its variable, else its default.

    Returns the flags given on the command line (their ``dest`` names).

    Raises:
        UsageError: a variable's value fails the flag's check.
    """
    given: set[str] = set()
    for name in COMMAND_FLAGS.get(args.command, ()):
        flag = FLAGS[name]
        if getattr(args, flag.dest) is not None:
            given.add(flag.dest)
            continue
        found = next(((var, env[var]) for var in flag.env_names if var in env), None)
        value = (
            flag_default(args.command, flag)
            if found is None
            else _from_env(flag, *found)
        )
        setattr(args, flag.dest, value)
    return given


def _from_env(flag: Flag, var: str, raw: str) -> Any:
    convert = flag.convert or _switch
    try:
        return convert(raw)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{var}: {exc}") from None


def check_combinations(args: argparse.Namespace, given: set[str]) -> None:
    """Flags that need another, or exclude one.

    Raises:
        UsageError: naming both flags.
    """
    if getattr(args, "proxy", None) is not None and args.proxy_file is not None:
        raise UsageError("--proxy and --proxy-file exclude each other")
    if args.command != "run":
        return
    if args.sandbox_faults is not None and not args.sandbox:
        source = (
            "--sandbox-faults"
            if "sandbox_faults" in given
            else "PROVISIONER_SANDBOX_FAULTS"
        )
        raise UsageError(f"{source} needs --sandbox")
    if args.sandbox and args.api_url is not None:
        raise UsageError("--api-url and --sandbox exclude each other")
    if args.sandbox and "token_file" in given:
        raise UsageError(
            "--token-file and --sandbox exclude each other (the sandbox makes its own token)"
        )
    if args.sandbox and args.preflight:
        raise UsageError(
            "--preflight and --sandbox exclude each other (the sandbox is the emulator)"
        )
    if args.update and args.on_conflict == "fail":
        raise UsageError(
            "--update and --on-conflict fail exclude each other (an existing name would fail, not update)"
        )


def _add_report(sub: Any) -> None:
    parser = sub.add_parser(
        "report",
        help="summarise result logs: counts, errors, latency, throughput (--html: charts)",
        description="Read result logs (a run and its resume, workers' logs) and print counts by status, the top error types, attempts, latency percentiles, wall time, creates/s and the slowest specs; --html also writes a self-contained page with charts.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="result logs (JSON Lines); - reads one from stdin",
    )
    for name in COMMAND_FLAGS["report"]:
        _add_flag(parser, "report", FLAGS[name])


def _add_dead_letters(sub: Any) -> None:
    parser = sub.add_parser(
        "dead-letters",
        help="list, show, replay or purge a queue's dead letters",
        description="list: the dead letters (oldest first); show ID: one, with its spec; "
        "replay [ID ...]: check each spec again and queue it again with its original key "
        "(nothing is created twice), an invalid one stays dead; purge [ID ...]: delete them. "
        "Without IDs replay and purge act on every dead letter --reason and --limit select, "
        "and ask Proceed? [y/N] on a terminal (--yes otherwise).",
        allow_abbrev=False,
    )
    parser.add_argument(
        "action",
        choices=DEAD_LETTER_ACTIONS,
        help="list, show, replay or purge",
    )
    parser.add_argument(
        "ids",
        nargs="*",
        metavar="ID",
        help="dead-letter entry ids (<ms>-<seq>, as list shows them); show takes one",
    )
    for name in COMMAND_FLAGS["dead-letters"]:
        _add_flag(parser, "dead-letters", FLAGS[name])


def build_parser() -> argparse.ArgumentParser:
    """The ``provisioner`` argument parser."""
    parser = _Parser(
        prog="provisioner",
        description="Create Qoder Cloud Agents Environments in bulk.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"provisioner {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_command(
        sub, "run", jobs=True, api=True,
        summary="create every environment of the job files",
        description="Validate job files, then create their environments concurrently, writing one result record per spec.",
    )  # fmt: skip
    validate = sub.add_parser(
        "validate",
        help="check job files without sending anything",
        description="Check every spec of the job files; list every error with file, line and field.",
        allow_abbrev=False,
    )
    validate.add_argument(
        "jobs",
        nargs="+",
        metavar="JOB",
        help="job files (.jsonl, .json, .yaml, .csv); - reads JSONL from stdin",
    )
    for name in COMMAND_FLAGS["validate"]:
        _add_flag(validate, "validate", FLAGS[name])
    _add_command(
        sub, "plan", jobs=True, api=True,
        summary="show what run would create and update, sending no write",
        description="Validate job files, read every environment once (archived included) and show per spec whether run would create it, update it (run --update), leave it unchanged, or cannot (conflict).",
    )  # fmt: skip
    _add_command(
        sub, "import", jobs=True, api=True,
        summary="record environments that exist already in a result log (--into), sending no write",
        description="Validate job files, read every environment once and record each one named as a spec as exists (with its drift) in --into, so plan, run --update and archive/delete --include-existing take it over; specs without an environment are listed, archived environments skipped.",
    )  # fmt: skip
    _add_command(
        sub, "doctor", jobs=False, api=True,
        summary="check the API before a bulk run: token, URL, dialect, rate headers, clock, proxy, CA",
        description=DOCTOR_DESCRIPTION,
    )  # fmt: skip
    for action in ("archive", "delete"):
        _add_command(
            sub, action, jobs=False, api=True,
            summary=f"{action} the environments a run created (--from its result log)",
            description=f"Read a run's result log and {action} the environments it created (with --include-existing also those it found), with run's concurrency, rate and retries; resumable.",
        )  # fmt: skip
    _add_command(
        sub, "enqueue", jobs=True, api=False,
        summary="validate job files and queue their specs on a Redis stream",
        description="Validate job files exactly as run does, then append every spec (with its source and key) to the queue.",
    )  # fmt: skip
    _add_command(
        sub, "worker", jobs=False, api=True,
        summary="create the environments queued on a Redis stream (one of a pool)",
        description="Join the stream's consumer group and create every queued spec with the same pipeline as run.",
    )  # fmt: skip
    _add_command(
        sub, "queue-status", jobs=False, api=False,
        summary="show a queue: waiting, pending per worker, results, dead letters",
        description="Show the stream's length, pending messages per consumer, results and dead letters.",
    )  # fmt: skip
    _add_dead_letters(sub)
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script for every command, flag and choice; "
        "source it from your shell's startup file (see docs/commands/completion.md).",
        allow_abbrev=False,
    )
    completion.add_argument(
        "shell", choices=COMPLETION_SHELLS, help="the shell: bash or zsh"
    )
    _add_report(sub)
    sub.add_parser(
        "emulator",
        help="serve a local emulator of the Environments API (see: provisioner emulator --help)",
        add_help=False,
    )
    return parser
