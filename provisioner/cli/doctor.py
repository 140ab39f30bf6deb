"""``provisioner doctor`` and ``run --preflight``: the target checked before a bulk run.

The checks are in :mod:`provisioner.lifecycle.checks` (those that send nothing)
and :mod:`provisioner.lifecycle.probes` (those that send requests that change
nothing). Here: settings from flags, one line per check (or one JSON document),
and the exit code: 1 when a check fails, else 0.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Mapping
from typing import Any

from provisioner.cli import eventloop
from provisioner.cli.common import ExitCode, pacing, print_json, proxy_setting, say
from provisioner.errors import ConfigError
from provisioner.lifecycle.checks import Check, Diagnosis, offline_checks
from provisioner.lifecycle.probes import probe_target
from provisioner.observe import log
from provisioner.proxy import ProxyConfig
from provisioner.redact import Scrubber, Secret, printable
from provisioner.settings import (
    CA_BUNDLE_ENV,
    ApiSettings,
    api_url_from_env,
    read_token,
)

_NAME_WIDTH = 13


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run ``provisioner doctor`` with parsed, resolved flags; return the exit code."""
    env = os.environ
    token = _token(args, env)
    secrets = [token.reveal()] if isinstance(token, Secret) else []
    log.configure(fmt=args.log_format, level=args.log_level, secrets=secrets)
    scrub = Scrubber(secrets)
    base_url = api_url_from_env(env, args.api_url)
    diagnosis = diagnose(args, env, base_url=base_url, token=token)
    if args.format == "json":
        print_json(document(diagnosis, target=base_url, scrub=scrub))
    else:
        for check in diagnosis.checks:
            print(render(check, scrub))
    return exit_code(diagnosis)


def _token(args: argparse.Namespace, env: Mapping[str, str]) -> Secret | Check:
    """The token, or the failed check that says why there is none."""
    try:
        return read_token(env, args.token_file)
    except ConfigError as exc:
        return Check("token", "fail", str(exc))


def diagnose(
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    base_url: str,
    token: Secret | Check,
) -> Diagnosis:
    """Every check: those that send nothing, then, if none failed, the probes.

    Raises:
        ConfigError: a malformed API URL or proxy URL, an unreadable proxy file.
    """
    explicit = proxy_setting(args)
    proxy = ProxyConfig.from_env(
        env,
        explicit=explicit.get("proxy"),
        explicit_source=explicit.get("proxy_source", "--proxy"),
    )
    ca_file, ca_source = _ca(args, env)
    checks = offline_checks(
        base_url=base_url,
        allow_insecure_http=bool(args.allow_insecure_http),
        proxy=proxy,
        ca_file=ca_file,
        ca_source=ca_source,
        env=env,
    )
    if isinstance(token, Check):
        checks.append(token)
    if isinstance(token, Check) or any(c.level == "fail" for c in checks):
        return Diagnosis(tuple(checks))
    with warnings.catch_warnings():
        # The transport check has said it: plain http, with --allow-insecure-http.
        warnings.simplefilter("ignore")
        settings = ApiSettings(
            token=token,
            base_url=base_url,
            timeout_s=float(args.timeout),
            ca_file=ca_file,
            allow_insecure_http=bool(args.allow_insecure_http),
            proxy=proxy,
        )
    online = eventloop.run(probe_target(settings, rate_per_s=_rate(args)))
    return Diagnosis((*checks, *online.checks), online.learnt)


def _ca(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str | None, str]:
    """The CA file and where it came from, as :class:`ApiSettings` picks it."""
    if args.ca_file:
        return args.ca_file, "--ca-file"
    return env.get(CA_BUNDLE_ENV) or None, CA_BUNDLE_ENV


def _rate(args: argparse.Namespace) -> float | None:
    """``--rate`` in requests per second; ``None`` for 0 (unlimited) and ``auto``."""
    return pacing(args)["rate_per_s"] or None


def preflight(api: ApiSettings, args: argparse.Namespace) -> Diagnosis:
    """``run --preflight``: the checks against ``api``, each said on stderr."""
    ca_file, ca_source = _ca(args, os.environ)
    scrub = Scrubber([api.token.reveal()])
    checks = offline_checks(
        base_url=api.base_url,
        allow_insecure_http=api.allow_insecure_http,
        proxy=api.proxy,
        ca_file=ca_file,
        ca_source=ca_source,
        env=os.environ,
    )
    diagnosis = Diagnosis(tuple(checks))
    if not diagnosis.has_failure:
        online = eventloop.run(probe_target(api, rate_per_s=_rate(args)))
        diagnosis = Diagnosis((*checks, *online.checks), online.learnt)
    for check in diagnosis.checks:
        say(
            f"preflight: {render(check, scrub)}",
            scrub,
            event="preflight.checked",
            level={"ok": "info", "warn": "warning", "fail": "error"}[check.level],
            check=check.name,
            result=check.level,
        )
    return diagnosis


def render(check: Check, scrub: Scrubber) -> str:
    """One line: level, name, sentence."""
    text = printable(scrub(check.message))
    return f"{check.level:<4}  {check.name:<{_NAME_WIDTH}} {text}"


def document(diagnosis: Diagnosis, *, target: str, scrub: Scrubber) -> dict[str, Any]:
    """What ``doctor --format json`` prints (after ``format_version``)."""
    checks = []
    for check in diagnosis.checks:
        item = check.to_dict()
        item["message"] = scrub(check.message)
        checks.append(item)
    counts = dict.fromkeys(("ok", "warn", "fail"), 0)
    for check in diagnosis.checks:
        counts[check.level] += 1
    return {
        "target": target,
        "ok": not diagnosis.has_failure,
        "counts": counts,
        "checks": checks,
        "learnt": diagnosis.learnt.to_dict(),
        "exit_code": int(exit_code(diagnosis)),
    }


def exit_code(diagnosis: Diagnosis) -> ExitCode:
    """1 when a check failed, else 0 (warnings included)."""
    return ExitCode.FAILED if diagnosis.has_failure else ExitCode.OK


__all__ = ["cmd_doctor", "diagnose", "document", "preflight", "render"]
