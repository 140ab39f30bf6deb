"""Which proxy a request goes through, read as curl reads it.

:class:`ProxyConfig` holds where a proxy may come from: an explicit URL
(``--proxy``, ``--proxy-file`` or ``PROVISIONER_PROXY``) and the environment's
``https_proxy``/``HTTPS_PROXY``, ``http_proxy``/``HTTP_PROXY``,
``all_proxy``/``ALL_PROXY`` and ``no_proxy``/``NO_PROXY`` (lower case first,
as curl does). :meth:`ProxyConfig.route` answers once per base URL, so no
request pays for it.

``NO_PROXY`` is a comma-separated list of host names (each also matching its
subdomains, with or without a leading dot), IP addresses, CIDR ranges such as
``10.0.0.0/8``, any of them with ``:port``, or ``*`` for every host. An explicit
proxy wins over ``NO_PROXY``, as curl's ``--proxy`` does over the variables;
``--proxy none`` ignores every variable.

Credentials may sit in the proxy URL (``http://user:password@proxy:3128``).
They leave it here: a :class:`Route` carries the URL without them and the
``Proxy-Authorization`` value as a :class:`~provisioner.settings.Secret`.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from provisioner.errors import ConfigError
from provisioner.redact import Secret

#: The value of ``--proxy`` that means "connect directly, whatever the environment says".
DIRECT = "none"
_SCHEME_VARS = {
    "https": ("https_proxy", "HTTPS_PROXY"),
    "http": ("http_proxy", "HTTP_PROXY"),
}
_ALL_VARS = ("all_proxy", "ALL_PROXY")
_NO_PROXY_VARS = ("no_proxy", "NO_PROXY")
PROXY_VARS = (
    *_SCHEME_VARS["https"],
    *_SCHEME_VARS["http"],
    *_ALL_VARS,
    *_NO_PROXY_VARS,
)
_PROXY_SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class Route:
    """A proxy to send through.

    Attributes:
        url: the proxy's URL, without credentials (safe to log).
        authorization: the ``Proxy-Authorization`` header value, when the URL
            carried a user name.
        source: where it came from (``--proxy``, ``HTTPS_PROXY``, ...).
        password: the password alone, for the scrubber to mask.
    """

    url: str
    authorization: Secret | None
    source: str
    password: Secret | None = None


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Where a proxy may come from; :meth:`route` picks one for a URL.

    Attributes:
        explicit: ``--proxy`` / ``--proxy-file`` / ``PROVISIONER_PROXY``, or
            :data:`DIRECT`; it may hold credentials, so it is a ``Secret``.
        explicit_source: the flag or variable ``explicit`` came from.
        variables: the proxy variables of the environment, by name.
    """

    explicit: Secret | None = None
    explicit_source: str = "--proxy"
    variables: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        explicit: str | None = None,
        explicit_source: str = "--proxy",
    ) -> ProxyConfig:
        """Take the proxy variables of ``env`` and an explicit proxy, if any.

        Raises:
            ConfigError: a proxy URL that is not ``http(s)://host[:port]``.
        """
        config = cls(
            explicit=None if explicit is None else Secret(explicit.strip()),
            explicit_source=explicit_source,
            variables=tuple((k, env[k]) for k in PROXY_VARS if env.get(k)),
        )
        config.route("https://example.invalid/")  # every URL it holds, checked now
        config.route("http://example.invalid/")
        return config

    def route(self, url: str) -> Route | None:
        """The proxy for requests to ``url``, or ``None`` to connect directly.

        Raises:
            ConfigError: the chosen proxy URL is malformed or not http(s).
        """
        if self.explicit is not None:
            value = self.explicit.reveal()
            if value.lower() == DIRECT:
                return None
            return parse_proxy(value, source=self.explicit_source)
        parts = urlsplit(url)
        variables = dict(self.variables)
        no_proxy = _first(variables, _NO_PROXY_VARS)
        if no_proxy and bypasses(no_proxy[1], parts.hostname or "", parts.port):
            return None
        names = _SCHEME_VARS.get(parts.scheme, ()) + _ALL_VARS
        found = _first(variables, names)
        return None if found is None else parse_proxy(found[1], source=found[0])


def _first(
    variables: Mapping[str, str], names: tuple[str, ...]
) -> tuple[str, str] | None:
    return next(((n, variables[n]) for n in names if variables.get(n)), None)


def parse_proxy(value: str, *, source: str) -> Route:
    """``value`` (``[scheme://][user:password@]host[:port]``) as a route.

    A value without a scheme is ``http://``, as curl reads it.

    Raises:
        ConfigError: another scheme (socks is not supported), no host, or a
            bad port; the message never echoes a password.
    """
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _PROXY_SCHEMES:
        raise ConfigError(
            f"{source}: {scheme}:// proxies are not supported; use an http:// "
            "proxy, or list the API's host in NO_PROXY"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{source}: the proxy URL has a bad port") from None
    host = parts.hostname
    if not host:
        raise ConfigError(f"{source}: the proxy URL has no host")
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}" + (f":{port}" if port else "")
    if parts.username is None:
        return Route(url=url, authorization=None, source=source)
    user, password = unquote(parts.username), unquote(parts.password or "")
    pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return Route(
        url=url,
        authorization=Secret(f"Basic {pair}"),
        source=source,
        password=Secret(password) if password else None,
    )


def has_password(value: str) -> bool:
    """Whether a proxy URL carries a password (it must not be a flag's value)."""
    text = value if "://" in value else "http://" + value
    try:
        return bool(urlsplit(text.strip()).password)
    except ValueError:
        return "@" in text


def bypasses(no_proxy: str, host: str, port: int | None = None) -> bool:
    """Whether ``NO_PROXY`` (``no_proxy``) lets ``host`` (and ``port``) go direct."""
    host = host.strip("[]").rstrip(".").lower()
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        if entry and _matches(entry, host, port):
            return True
    return False


def _matches(entry: str, host: str, port: int | None) -> bool:
    name, entry_port = _split_port(entry)
    if entry_port is not None and entry_port != port:
        return False
    name = name.strip("[]")
    network = _network(name)
    if network is not None:
        address = _address(host)
        return address is not None and address in network
    name = name.lstrip(".").lstrip("*.").rstrip(".")
    return bool(name) and (host == name or host.endswith("." + name))


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port`` / ``[v6]:port`` -> (host, port); a bare IPv6 address has no port."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def _network(name: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(name, strict=False)
    except ValueError:
        return None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


__all__ = [
    "DIRECT",
    "PROXY_VARS",
    "ProxyConfig",
    "Route",
    "bypasses",
    "has_password",
    "parse_proxy",
]
