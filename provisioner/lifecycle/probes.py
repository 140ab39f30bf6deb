"""The checks of ``provisioner doctor`` that send requests, none of which changes anything.

* ``GET /environments?limit=1``: the token (401, 403), the base URL (404: no
  API there), the paging generation, the rate headers and the server's ``Date``;
* ``POST`` and ``PUT /environments/env_000…0``, an id that cannot exist, with an
  empty metadata patch: 404 means the verb reaches the update route, 405 that
  it does not;
* one ``POST /environments`` per allowlist spelling whose ``metadata`` is not an
  object: the server refuses the body either at ``config.networking`` (the
  spelling is refused) or at a later field (the spelling passed), and creates
  nothing. A server that creates it anyway has it archived at once, and the
  check says so (``warn``).

The update and networking probes run only once the list has answered 2xx.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

from provisioner.api.client import ApiClient, Probe, open_session
from provisioner.api.responses import is_env_id
from provisioner.errors import ApiError, TransportError
from provisioner.lifecycle.checks import Check, Diagnosis, Learnt, Level
from provisioner.settings import ApiSettings

#: An id of the documented shape that no environment has: updates of it are 404.
PROBE_ID = "env_" + "0" * 32
PROBE_NAME = "provisioner-doctor-probe"
#: Not an object, so every documented server refuses the probe create.
PROBE_METADATA = "provisioner doctor: this create must be refused"
#: The allowlist spellings of the doc generations (``unrestricted`` is in all).
SPELLINGS = ("limited", "allowlist", "allowed_hosts")
#: A clock further than this from the server's ``Date`` is a warning.
CLOCK_SKEW_WARN_S = 30.0
RATE_HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "retry-after",
)
_HOSTS = {
    "openapi.qoder.sh": "the oldest docs' host (G1)",
    "api.qoder.com": "the newer docs' host (G2/G3)",
    "api.qoder.com.cn": "the newer docs' CN host (G2/G3)",
}

Clock = Callable[[], float]


async def probe_target(
    settings: ApiSettings, *, rate_per_s: float | None, clock: Clock = time.time
) -> Diagnosis:
    """:func:`check_online` on a session of its own (one connection).

    Raises:
        ConfigError: the CA file cannot be loaded.
    """
    async with open_session(
        concurrency=1, timeout_s=settings.timeout_s, ca_file=settings.ca_file
    ) as session:
        client = ApiClient(session, settings=settings)
        return await check_online(
            client, base_url=settings.base_url, rate_per_s=rate_per_s, clock=clock
        )


async def check_online(
    client: ApiClient,
    *,
    base_url: str,
    rate_per_s: float | None,
    clock: Clock = time.time,
) -> Diagnosis:
    """The checks that send requests (none of which changes anything)."""
    started = clock()
    try:
        first = await client.probe("GET", "/environments", params={"limit": "1"})
    except TransportError as exc:
        return Diagnosis((Check("connect", "fail", str(exc)),))
    ended = clock()
    checks = [
        check_token(first),
        check_base_url(first, base_url),
        check_clock(first, started_s=started, ended_s=ended),
        check_rate_headers(first, rate_per_s),
    ]
    if first.error is not None:
        return Diagnosis(tuple(checks))
    update, method = await check_update(client)
    networking, types = await check_networking(client)
    learnt = Learnt(update_method=method, networking_types=types)
    return Diagnosis((*checks, update, networking), learnt)


def check_token(probe: Probe) -> Check:
    """The token, from the list's answer: 401 and 403 fail."""
    status = probe.http_status
    error_type = probe.error.error_type if probe.error is not None else None
    details = {"http_status": status}
    if probe.error is None:
        return Check("token", "ok", "accepted: listing environments works", details)
    if status == 401:  # noqa: PLR2004 - Unauthorized
        return Check(
            "token",
            "fail",
            f"refused (HTTP 401 {error_type}): missing, malformed, expired or "
            "revoked; set QODER_PAT or --token-file",
            details,
        )
    if status == 403:  # noqa: PLR2004 - Forbidden
        return Check(
            "token",
            "fail",
            f"valid but without rights (HTTP 403 {error_type}): it may not list "
            "environments",
            details,
        )
    return Check(
        "token", "warn", f"not confirmed: the list answered HTTP {status}", details
    )


def check_base_url(probe: Probe, base_url: str) -> Check:
    """Whether the base URL serves the Environments API, and which generation."""
    parts = urlsplit(base_url)
    hint = _HOSTS.get(parts.hostname or "", "")
    details = {"http_status": probe.http_status, "host": hint or None}
    error = probe.error
    if error is None:
        payload = probe.payload
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            return Check(
                "api_url",
                "fail",
                f"{base_url}/environments answered HTTP {probe.http_status} but "
                "not with a list of environments: is this the API's base URL?",
                details,
            )
        paging = "next_page" in payload
        details["paging"] = "page" if paging else "after_id"
        cursors = (
            "page cursors (newest docs)" if paging else "after_id cursors (older docs)"
        )
        where = f"; {hint}" if hint else ""
        return Check(
            "api_url", "ok", f"serves the Environments API, {cursors}{where}", details
        )
    if probe.http_status in (401, 403):
        return Check("api_url", "warn", "not confirmed: the token was refused", details)
    if probe.http_status == 404:  # noqa: PLR2004 - Not Found
        return Check(
            "api_url",
            "fail",
            f"no Environments API at {base_url}/environments (HTTP 404): the base "
            "URL ends in /api/v1/cloud, e.g. https://api.qoder.com/api/v1/cloud",
            details,
        )
    return Check("api_url", "fail", f"the list failed: {error}", details)


def check_clock(probe: Probe, *, started_s: float, ended_s: float) -> Check:
    """This machine's clock against the server's ``Date`` (whole seconds)."""
    date = probe.headers.get("date")
    try:
        server_s = email.utils.parsedate_to_datetime(date or "").timestamp()
    except (TypeError, ValueError):
        return Check("clock", "warn", "no readable Date header: the skew is unknown")
    # Date is truncated to the second and was stamped somewhere in the request.
    early, late = started_s - (server_s + 1), ended_s - server_s
    skew = 0.0 if early <= 0 <= late else (early if early > 0 else late)
    details = {"skew_s": round(skew, 3), "server_date": date}
    if abs(skew) <= CLOCK_SKEW_WARN_S:
        return Check(
            "clock",
            "ok",
            f"within {CLOCK_SKEW_WARN_S:g} s of the server's Date",
            details,
        )
    way = "ahead of" if skew > 0 else "behind"
    return Check(
        "clock",
        "warn",
        f"this machine's clock is {abs(skew):.0f} s {way} the server's Date: "
        "Retry-After dates and created_at filters are read wrong; sync it (NTP)",
        details,
    )


def check_rate_headers(probe: Probe, rate_per_s: float | None) -> Check:
    """The rate headers the server sends, and ``--rate`` against their limit."""
    found = {
        name: probe.headers[name] for name in RATE_HEADERS if name in probe.headers
    }
    details = {"rate_headers": found}
    if not found:
        return Check(
            "rate_headers",
            "ok",
            "none sent (the docs plan X-RateLimit-*): --rate paces the run, "
            "--rate auto finds the limit",
            details,
        )
    shown = ", ".join(f"{name}: {value}" for name, value in found.items())
    limit = _number(found.get("x-ratelimit-limit") or found.get("ratelimit-limit"))
    if rate_per_s and limit is not None and rate_per_s > limit:
        return Check(
            "rate_headers",
            "warn",
            f"{shown}: --rate {rate_per_s:g} is above the limit; expect 429s "
            "(or use --rate auto)",
            details,
        )
    return Check("rate_headers", "ok", shown, details)


def _number(text: str | None) -> float | None:
    try:
        return float((text or "").split(",")[0].split(";")[0])
    except ValueError:
        return None


async def check_update(client: ApiClient) -> tuple[Check, str | None]:
    """Which update verbs reach the update route (404 for an unknown id, not 405)."""
    statuses: dict[str, int | None] = {}
    for method in ("POST", "PUT"):
        try:
            probe = await client.probe(
                method,
                f"/environments/{PROBE_ID}",
                body={"metadata": {}},
                idempotency_key=str(uuid.uuid4()),
            )
        except TransportError:
            statuses[method] = None
            continue
        statuses[method] = probe.http_status
    details = {"answers": statuses}
    accepted = [m for m, status in statuses.items() if status == 404]  # noqa: PLR2004
    if "POST" in accepted:
        also = " and PUT" if "PUT" in accepted else ""
        return Check("update", "ok", f"POST (the newest docs){also}", details), "POST"
    if accepted == ["PUT"]:
        message = (
            f"PUT only (the oldest docs; POST answered {statuses['POST']}): run "
            "--update sends POST unless --preflight, which learns PUT and sends it"
        )
        return Check("update", "warn", message, details), "PUT"
    shown = ", ".join(f"{m} answered {s}" for m, s in statuses.items())
    return Check("update", "warn", f"no update verb confirmed ({shown})", details), None


async def check_networking(client: ApiClient) -> tuple[Check, tuple[str, ...] | None]:
    """Which allowlist spellings pass validation (probes that must be refused)."""
    outcomes = {kind: await _spelling(client, kind) for kind in SPELLINGS}
    created = {k: o.partition(":")[2] for k, o in outcomes.items() if ":" in o}
    accepted = [k for k, o in outcomes.items() if o == "accepted" or k in created]
    refused = [k for k, o in outcomes.items() if o == "refused"]
    unknown = [k for k in SPELLINGS if k not in accepted and k not in refused]
    details = {
        "accepted": accepted,
        "refused": refused,
        "unknown": unknown,
        "created": list(created.values()),
    }
    parts = [", ".join(["accepts unrestricted", *accepted])]
    if refused:
        parts.append(
            f"refuses {', '.join(refused)}: a spec that uses one is rejected (400)"
        )
    if unknown:
        parts.append(f"cannot tell for {', '.join(unknown)}")
    if created:
        parts.append(
            "the server created probes despite their invalid metadata: "
            f"{', '.join(created.values())} (named {PROBE_NAME}, archived at once)"
        )
    level: Level = "warn" if refused or unknown or created else "ok"
    types = None if unknown else ("unrestricted", *accepted)
    return Check("networking", level, "; ".join(parts), details), types


async def _spelling(client: ApiClient, kind: str) -> str:
    """``accepted``, ``refused``, ``unknown``, or ``created:<id>`` (then archived)."""
    networking = {"type": kind, "allowed_hosts": ["example.com"]}
    body = {
        "name": PROBE_NAME,
        "config": {"type": "cloud", "networking": networking},
        "metadata": PROBE_METADATA,
    }
    try:
        probe = await client.probe(
            "POST", "/environments", body=body, idempotency_key=str(uuid.uuid4())
        )
    except TransportError:
        return "unknown"
    payload = probe.payload
    if probe.error is None and isinstance(payload, dict):
        env_id = payload.get("id")
        if is_env_id(env_id):
            if await _archive_quietly(client, str(env_id)):
                return f"created:{env_id}"
            return f"created:{env_id} (not archived: archive it by hand)"
    if probe.http_status != 400:  # noqa: PLR2004 - Bad Request
        return "unknown"
    param = _error_param(payload)
    if param is None:
        return "unknown"
    return "refused" if param.startswith("config.networking") else "accepted"


async def _archive_quietly(client: ApiClient, env_id: str) -> bool:
    """Archive a probe the server should not have created; False when that failed."""
    try:
        await client.archive(env_id)
    except (ApiError, TransportError):
        return False
    return True


def _error_param(payload: object) -> str | None:
    """``error.param`` of an error envelope, if any."""
    error = payload.get("error") if isinstance(payload, dict) else None
    param = error.get("param") if isinstance(error, dict) else None
    return param if isinstance(param, str) else None


__all__ = [
    "PROBE_ID",
    "SPELLINGS",
    "check_base_url",
    "check_clock",
    "check_networking",
    "check_online",
    "check_rate_headers",
    "check_token",
    "check_update",
    "probe_target",
]
