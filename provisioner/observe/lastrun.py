"""``--metrics-textfile`` and ``--pushgateway``: a run's series, left once when it ends.

A scheduled ``run`` (a CronJob, cron) may end before any Prometheus scrapes it.
When it ends, :func:`leave` writes its ``provisioner_*`` series
(:meth:`provisioner.observe.metrics.Metrics.run_series`) and four gauges of the run
itself to a file for node_exporter's textfile collector (written to a temporary
file beside it, then renamed: a scrape never reads half a file) and/or pushes them
to a Pushgateway with ``PUT``, so that its group holds the last run alone:

- ``provisioner_run_start_timestamp_seconds`` and
  ``provisioner_run_end_timestamp_seconds``: Unix seconds;
- ``provisioner_run_exit_code``: what the run exited with (0: every spec done);
- ``provisioner_run_last_success_timestamp_seconds``: the end of the last run
  that exited 0, this one's or, in the textfile, carried over from the file it
  replaces (a Pushgateway keeps none of an earlier push).

No ``process_*`` or ``python_*`` series: node_exporter and the Pushgateway have
their own, and a dead process's are no use.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, push_to_gateway, write_to_textfile
from prometheus_client.exposition import default_handler
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from provisioner.observe.metrics import Metrics
from provisioner.redact import redacted_url
from provisioner.settings import LastRunSettings

_LAST_SUCCESS = "provisioner_run_last_success_timestamp_seconds"
Handler = Callable[..., Callable[[], None]]


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a run went, in Unix seconds and its exit code."""

    started_s: float
    ended_s: float
    exit_code: int
    last_success_s: float | None = None


def leave(settings: LastRunSettings, metrics: Metrics, end: RunEnd) -> list[str]:
    """Write the textfile and push to the gateway, as configured.

    Returns:
        What failed, one sentence each (the run's exit code does not change).
    """
    problems: list[str] = []
    if settings.textfile_path is not None:
        try:
            write_textfile(settings.textfile_path, metrics, end)
        except OSError as exc:
            problems.append(
                f"--metrics-textfile {settings.textfile_path}: {exc.strerror or exc}"
            )
    if settings.pushgateway_url is not None:
        try:
            push(settings.pushgateway_url, settings, metrics, end)
        except OSError as exc:  # urllib's URLError and HTTPError are OSErrors
            url = redacted_url(settings.pushgateway_url)
            problems.append(f"--pushgateway {url}: {getattr(exc, 'reason', exc)}")
    return problems


def write_textfile(path: str, metrics: Metrics, end: RunEnd) -> None:
    """Replace ``path`` with the run's series, keeping the last success it held."""
    if end.exit_code != 0 and end.last_success_s is None:
        end = RunEnd(end.started_s, end.ended_s, end.exit_code, _last_success(path))
    write_to_textfile(path, _registry(metrics, end))


def push(url: str, settings: LastRunSettings, metrics: Metrics, end: RunEnd) -> None:
    """``PUT`` the run's series to the Pushgateway at ``url``, group ``job``.

    A ``user:password@`` in the URL (from ``PROVISIONER_PUSHGATEWAY``, never argv)
    becomes basic authentication, not part of the address.
    """
    address, handler = _with_auth(url)
    push_to_gateway(
        address,
        job=settings.pushgateway_job,
        registry=_registry(metrics, end),
        timeout=settings.push_timeout_s,
        handler=handler,
    )


def _registry(metrics: Metrics, end: RunEnd) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.run_series())
    registry.register(_RunCollector(end))
    return registry


class _RunCollector(Collector):
    """The four gauges of the run itself."""

    def __init__(self, end: RunEnd) -> None:
        self._end = end

    def collect(self) -> Iterator[Metric]:
        """Start, end, exit code and (when known) the last success."""
        end = self._end
        last_success = end.ended_s if end.exit_code == 0 else end.last_success_s
        gauges = {
            "provisioner_run_start_timestamp_seconds": (
                "When the run started, in Unix seconds.",
                end.started_s,
            ),
            "provisioner_run_end_timestamp_seconds": (
                "When the run ended, in Unix seconds.",
                end.ended_s,
            ),
            "provisioner_run_exit_code": (
                "What the run exited with (0: every spec created or there).",
                end.exit_code,
            ),
            _LAST_SUCCESS: ("When a run last exited 0, in Unix seconds.", last_success),
        }
        for name, (text, value) in gauges.items():
            if value is not None:
                yield GaugeMetricFamily(name, text, value=value)


def _last_success(path: str) -> float | None:
    """The last success an earlier textfile holds, if it can be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        families = list(text_string_to_metric_families(text))
    except (OSError, UnicodeError, ValueError):
        return None
    for family in families:
        for sample in family.samples:
            if sample.name == _LAST_SUCCESS:
                return float(sample.value)
    return None


def _with_auth(url: str) -> tuple[str, Handler]:
    """The URL without its user info, and a handler that sends it as basic auth."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, default_handler
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    address = urlunsplit(parts._replace(netloc=netloc))
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    authorization = "Basic " + base64.b64encode(pair.encode()).decode()

    def handler(
        url: str,
        method: str,
        timeout: float | None,
        headers: list[tuple[str, str]],
        data: bytes,
    ) -> Callable[[], None]:
        return default_handler(
            url, method, timeout, [*headers, ("Authorization", authorization)], data
        )

    return address, handler


__all__ = ["RunEnd", "leave", "push", "write_textfile"]
