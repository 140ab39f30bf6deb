"""The checks of ``provisioner doctor``: their result type, and those that send nothing.

A :class:`Check` is one line of the diagnosis (``ok``, ``warn`` or ``fail``); a
:class:`Diagnosis` is every check in order and what was :class:`Learnt` about the
target. The checks here read the settings only: the URL's scheme (plain http to a
host that is not loopback would send the token unencrypted), the proxy the API
URL goes through and the CA that is trusted. :mod:`provisioner.lifecycle.probes`
holds those that send requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from provisioner.api.client import tls_context
from provisioner.errors import ConfigError
from provisioner.proxy import ProxyConfig, bypasses
from provisioner.settings import is_insecure_url

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the diagnosis: a check's name, level, sentence and data."""

    name: str
    level: Level
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The check as ``--format json`` shows it."""
        return {
            "name": self.name,
            "level": self.level,
            "message": self.message,
            **self.details,
        }


@dataclass(frozen=True, slots=True)
class Learnt:
    """What the target was found to speak (``None``: not learnt).

    Attributes:
        update_method: the update verb the client should send (``POST`` when the
            target takes both).
        networking_types: the ``networking.type`` spellings the target accepts.
    """

    update_method: str | None = None
    networking_types: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """What ``--format json`` shows under ``learnt``."""
        types = self.networking_types
        return {
            "update_method": self.update_method,
            "networking_types": None if types is None else list(types),
        }


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Every check, in order, and what was learnt."""

    checks: tuple[Check, ...]
    learnt: Learnt = Learnt()

    @property
    def has_failure(self) -> bool:
        """Whether any check failed."""
        return any(check.level == "fail" for check in self.checks)


# --- offline ------------------------------------------------------------------


def check_transport(base_url: str, *, allow_insecure_http: bool) -> Check:
    """Whether the token would cross the network unencrypted."""
    host = urlsplit(base_url).hostname or ""
    if urlsplit(base_url).scheme == "https":
        return Check("transport", "ok", f"https to {host}")
    if not is_insecure_url(base_url):
        return Check("transport", "ok", f"plain http to loopback {host}")
    if allow_insecure_http:
        return Check(
            "transport",
            "warn",
            f"plain http to {host} (--allow-insecure-http): the token crosses "
            "the network unencrypted",
        )
    return Check(
        "transport",
        "fail",
        f"plain http to {host} would send the token unencrypted: run refuses it "
        "without --allow-insecure-http; use https (nothing was sent)",
    )


def check_proxy(base_url: str, proxy: ProxyConfig) -> Check:
    """Which proxy requests to ``base_url`` go through, and why.

    Raises:
        ConfigError: the chosen proxy URL is malformed.
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    variables = dict(proxy.variables)
    no_proxy = variables.get("no_proxy") or variables.get("NO_PROXY")
    details = {"proxy": None, "proxy_source": None, "no_proxy": no_proxy}
    route = proxy.route(base_url)
    if route is not None:
        details.update(proxy=route.url, proxy_source=route.source)
        return Check(
            "proxy", "ok", f"through {route.url} (from {route.source})", details
        )
    if proxy.explicit is not None:
        return Check("proxy", "ok", f"direct ({proxy.explicit_source} none)", details)
    if no_proxy and bypasses(no_proxy, host, parts.port):
        return Check(
            "proxy", "ok", f"direct: NO_PROXY={no_proxy} matches {host}", details
        )
    return Check("proxy", "ok", "direct: no proxy variable applies", details)


def check_ca(
    base_url: str, ca_file: str | None, *, source: str, env: Mapping[str, str]
) -> Check:
    """Which certificates are trusted, and whether they load."""
    details = {"ca_file": ca_file, "ca_source": source if ca_file else None}
    if urlsplit(base_url).scheme != "https":
        return Check("ca", "ok", "not used: plain http", details)
    try:
        tls_context(ca_file)
    except ConfigError as exc:
        return Check("ca", "fail", str(exc), details)
    if ca_file is not None:
        return Check("ca", "ok", f"trusts {ca_file} (from {source})", details)
    store = [
        f"{name}={env[name]}"
        for name in ("SSL_CERT_FILE", "SSL_CERT_DIR")
        if env.get(name)
    ]
    shown = f" ({', '.join(store)})" if store else ""
    return Check("ca", "ok", f"the system's store{shown}", details)


def offline_checks(
    *,
    base_url: str,
    allow_insecure_http: bool,
    proxy: ProxyConfig,
    ca_file: str | None,
    ca_source: str,
    env: Mapping[str, str],
) -> list[Check]:
    """The checks that send nothing: transport, proxy and CA, in that order."""
    return [
        check_transport(base_url, allow_insecure_http=allow_insecure_http),
        check_proxy(base_url, proxy),
        check_ca(base_url, ca_file, source=ca_source, env=env),
    ]


__all__ = [
    "Check",
    "Diagnosis",
    "Learnt",
    "Level",
    "check_ca",
    "check_proxy",
    "check_transport",
    "offline_checks",
]
