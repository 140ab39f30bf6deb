"""``provisioner doctor`` and ``run --preflight`` against real emulators on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from provisioner.api.client import ApiClient, Probe, open_session
from provisioner.cli.main import main
from provisioner.emulator import Emulator, FaultPlan
from provisioner.lifecycle.checks import check_proxy
from provisioner.lifecycle.probes import check_clock, check_networking
from provisioner.proxy import ProxyConfig
from provisioner.redact import Secret
from provisioner.settings import ApiSettings
from tests.helpers import (
    TEST_TOKEN,
    Serve,
    child_env,
    issue,
    make_specs,
    records,
    run_cli,
)

MakeLive = Callable[..., Emulator]
WRONG_TOKEN = "pt-wrong-token-0123456789abcdef"


def doctor(
    capsys: pytest.CaptureFixture[str], emulator: Emulator, *args: str
) -> tuple[int, dict[str, str], str]:
    """``provisioner doctor`` in process: its exit code, each check's line by name, stderr."""
    code = main(["doctor", "--api-url", emulator.url, *args])
    out, err = capsys.readouterr()
    lines = {line.split()[1]: line for line in out.splitlines() if line.strip()}
    return code, lines, err


def doctor_json(
    capsys: pytest.CaptureFixture[str], emulator: Emulator, *args: str
) -> tuple[int, dict[str, Any]]:
    code = main(["doctor", "--api-url", emulator.url, "--format", "json", *args])
    return code, json.loads(capsys.readouterr().out)


def levels(document: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["level"] for check in document["checks"]}


def test_a_clean_target_is_all_ok_and_exits_0(
    make_live_emulator: MakeLive, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against a target that speaks every dialect every check is ok, and nothing is created."""
    emulator = make_live_emulator()
    code, lines, _ = doctor(capsys, emulator)
    assert code == 0
    assert list(lines) == [
        "transport",
        "proxy",
        "ca",
        "token",
        "api_url",
        "clock",
        "rate_headers",
        "update",
        "networking",
    ]
    assert all(line.startswith("ok ") for line in lines.values()), lines
    assert "POST (the newest docs) and PUT" in lines["update"]
    assert emulator.stats()["creations"] == 0
    assert emulator.environments() == []


def test_json_is_one_document_with_format_version(
    make_live_emulator: MakeLive, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--format json` prints one parseable document: format_version first, checks, what was learnt."""
    emulator = make_live_emulator()
    code, document = doctor_json(capsys, emulator)
    assert code == 0
    assert next(iter(document)) == "format_version"
    assert document["format_version"] == 1
    assert document["ok"] is True
    assert document["exit_code"] == 0
    assert document["target"] == emulator.url
    assert document["counts"] == {"ok": 9, "warn": 0, "fail": 0}
    assert document["learnt"] == {
        "update_method": "POST",
        "networking_types": ["unrestricted", "limited", "allowlist", "allowed_hosts"],
    }


def test_a_wrong_token_fails_by_name_and_is_never_shown(
    make_live_emulator: MakeLive,
) -> None:
    """A refused token is a failed `token` check (exit 1), and the token shows nowhere."""
    emulator = make_live_emulator()
    env = child_env(token=WRONG_TOKEN)
    for extra in ([], ["--format", "json"]):
        done = run_cli("doctor", "--api-url", emulator.url, *extra, env=env)
        assert done.returncode == 1, done.stderr
        assert WRONG_TOKEN not in done.stdout + done.stderr
    assert (
        "fail  token         refused (HTTP 401 authentication_error)"
        in run_cli("doctor", "--api-url", emulator.url, env=env).stdout
    )
    document = json.loads(done.stdout)
    assert levels(document)["token"] == "fail"
    assert "update" not in levels(document)  # no probe behind a refused token
    assert emulator.stats()["creations"] == 0


def test_a_forbidden_token_fails_as_without_rights(
    make_live_emulator: MakeLive, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 403 token is named as valid but without rights."""
    emulator = make_live_emulator(forbidden_tokens=frozenset({"pt-forbidden"}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QODER_PAT", "pt-forbidden")
        code, lines, _ = doctor(capsys, emulator)
    assert code == 1
    assert lines["token"].startswith(
        "fail  token         valid but without rights (HTTP 403"
    )


def test_no_token_fails_without_sending_anything(
    make_live_emulator: MakeLive, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without QODER_PAT or --token-file the token check fails and no request is sent."""
    emulator = make_live_emulator()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("QODER_PAT")
        code, lines, _ = doctor(capsys, emulator)
    assert code == 1
    assert "no API token: set QODER_PAT or pass --token-file" in lines["token"]
    assert emulator.stats()["requests"] == 0


def test_a_put_only_target_is_reported_and_learnt(
    make_live_emulator: MakeLive, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target that takes updates by PUT only is a warning (run --update sends POST), learnt as PUT."""
    emulator = make_live_emulator(update_methods=("PUT",))
    code, lines, _ = doctor(capsys, emulator)
    assert code == 0
    assert lines["update"].startswith("warn  update        PUT only (the oldest docs")
    assert "--preflight" in lines["update"]
    code, document = doctor_json(capsys, emulator)
    assert document["learnt"]["update_method"] == "PUT"
    check = next(c for c in document["checks"] if c["name"] == "update")
    assert check["answers"] == {"POST": 405, "PUT": 404}
    assert emulator.environments() == []


def test_refused_networking_spellings_are_named(
    make_live_emulator: MakeLive, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target of one generation's spellings is a warning naming those it refuses; nothing is created."""
    emulator = make_live_emulator(networking_types=("limited",))
    code, document = doctor_json(capsys, emulator)
    assert code == 0
    check = next(c for c in document["checks"] if c["name"] == "networking")
    assert check["level"] == "warn"
    assert check["accepted"] == ["limited"]
    assert check["refused"] == ["allowlist", "allowed_hosts"]
    assert "refuses allowlist, allowed_hosts" in check["message"]
    assert document["learnt"]["networking_types"] == ["unrestricted", "limited"]
    assert emulator.stats()["creations"] == 0


def test_a_plain_http_remote_url_fails_and_sends_nothing(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plain http to a host that is not loopback fails (run would refuse it) and nothing is sent."""
    url = "http://api.doctor.invalid/api/v1/cloud"
    assert main(["doctor", "--api-url", url]) == 1
    out = capsys.readouterr().out
    assert "fail  transport     plain http to api.doctor.invalid" in out
    assert "--allow-insecure-http" in out
    assert "token" not in {line.split()[1] for line in out.splitlines()}
    # With the flag it is a warning, and the probes go ahead (here: to no host at all).
    assert main(["doctor", "--api-url", url, "--allow-insecure-http"]) == 1
    out = capsys.readouterr().out
    assert "warn  transport     plain http to api.doctor.invalid" in out
    assert "fail  connect" in out


def test_a_base_url_without_the_api_fails(
    make_live_emulator: MakeLive, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A base URL under which there is no Environments API (404) fails the api_url check."""
    emulator = make_live_emulator()
    code = main(["doctor", "--api-url", emulator.root_url + "/api/v2/cloud"])
    out = capsys.readouterr().out
    assert code == 1
    assert "fail  api_url       no Environments API at" in out
    assert "/api/v1/cloud" in out


def test_rate_headers_are_shown_and_a_rate_above_the_limit_warns(
    make_live_emulator: MakeLive, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server's X-RateLimit-* headers are listed; --rate above their limit is a warning."""
    faults = FaultPlan(rate_limit_per_s=5, rate_limit_burst=20)
    emulator = make_live_emulator(rate_limit_headers=True, faults=faults)
    code, lines, _ = doctor(capsys, emulator, "--rate", "4")
    assert code == 0
    assert lines["rate_headers"].startswith("ok    rate_headers  x-ratelimit-limit: 5,")
    code, lines, _ = doctor(capsys, emulator, "--rate", "20")
    assert code == 0
    assert lines["rate_headers"].startswith("warn")
    assert "--rate 20 is above the limit" in lines["rate_headers"]


def test_the_proxy_check_names_no_proxy_and_hides_credentials(
    make_live_emulator: MakeLive, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """NO_PROXY sending the API direct is named; a proxy's password never shows."""
    emulator = make_live_emulator()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HTTP_PROXY", "http://proxy.doctor.invalid:3128")
        patch.setenv("NO_PROXY", "127.0.0.1")
        code, lines, _ = doctor(capsys, emulator)
    assert code == 0
    assert "direct: NO_PROXY=127.0.0.1 matches 127.0.0.1" in lines["proxy"]
    proxy = ProxyConfig.from_env(
        {"HTTPS_PROXY": "http://svc:s3cret@proxy.corp.example:3128"}
    )
    check = check_proxy("https://api.qoder.com/api/v1/cloud", proxy)
    assert check.message == "through http://proxy.corp.example:3128 (from HTTPS_PROXY)"
    assert "s3cret" not in str(check.to_dict())


def test_the_ca_check_names_the_ca_and_an_untrusted_certificate_fails(
    make_live_emulator: MakeLive,
    cli_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An https target: its private CA is named when trusted; untrusted, the connect check fails."""
    pki = issue(tmp_path, "127.0.0.1")
    emulator = make_live_emulator(tls_cert=pki.cert_file, tls_key=pki.key_file)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"):
            patch.delenv(name, raising=False)
        code, lines, _ = doctor(capsys, emulator, "--ca-file", pki.ca_file)
        assert code == 0
        assert lines["transport"] == "ok    transport     https to 127.0.0.1"
        assert (
            lines["ca"] == f"ok    ca            trusts {pki.ca_file} (from --ca-file)"
        )
        answered = emulator.stats()["requests"]
        code, lines, _ = doctor(capsys, emulator)
        assert code == 1
        assert lines["ca"] == "ok    ca            the system's store"
        assert lines["connect"].startswith("fail  connect       GET /environments: TLS")
        empty = tmp_path / "empty.pem"
        empty.write_text("")
        code, lines, _ = doctor(capsys, emulator, "--ca-file", str(empty))
        assert code == 1
        assert lines["ca"].startswith(
            f"fail  ca            cannot load CA file {empty}"
        )
        assert "token" not in lines
    assert emulator.stats()["requests"] == answered  # neither reached the API


def test_a_clock_far_from_the_servers_date_warns() -> None:
    """A clock more than 30 s off the server's Date is a warning saying which way."""
    now = 1_800_000_000.0
    probe = Probe(
        http_status=200,
        headers={"date": formatdate(now - 120, usegmt=True)},
        payload=None,
        error=None,
    )
    check = check_clock(probe, started_s=now, ended_s=now + 0.2)
    assert check.level == "warn"
    # Date is whole seconds: the skew is at least 119 s.
    assert "119 s ahead of the server's Date" in check.message
    in_step = check_clock(probe, started_s=now - 120.3, ended_s=now - 119.9)
    assert in_step.level == "ok"
    missing = Probe(http_status=200, headers={}, payload=None, error=None)
    assert check_clock(missing, started_s=now, ended_s=now).level == "warn"


def test_run_preflight_with_a_wrong_token_sends_no_create(
    make_live_emulator: MakeLive, tmp_path: Path
) -> None:
    """`run --preflight` against a refused token exits 1 before any create (0 creations)."""
    emulator = make_live_emulator()
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(s) + "\n" for s in make_specs(3)))
    results = tmp_path / "results.jsonl"
    done = run_cli(
        "run", jobs, "--api-url", emulator.url, "--preflight", "--results", results,
        "--no-progress", "--log-format", "console",
        env=child_env(token=WRONG_TOKEN),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "preflight failed (token); nothing was created" in done.stderr
    assert "preflight: fail  token" in done.stderr
    assert WRONG_TOKEN not in done.stdout + done.stderr
    assert emulator.stats()["creations"] == 0
    assert not results.exists()


def test_run_preflight_updates_a_put_only_target_with_put(
    make_live_emulator: MakeLive, write_jobs: Callable[..., Path], tmp_path: Path
) -> None:
    """Against a PUT-only target `run --update` fails; with --preflight it updates by PUT."""
    emulator = make_live_emulator(update_methods=("PUT",))
    specs = make_specs(2)
    base = ["--api-url", emulator.url, "--rate", "0", "--backoff", "0", "--no-progress"]
    env = child_env(token=TEST_TOKEN)
    first = run_cli(
        "run", write_jobs(specs), *base, "--results", tmp_path / "a.jsonl", env=env
    )
    assert first.returncode == 0, first.stderr
    drifted = write_jobs(
        [{**s, "description": "changed"} for s in specs], name="b.jsonl"
    )
    plain = tmp_path / "plain.jsonl"
    done = run_cli("run", drifted, *base, "--update", "--results", plain, env=env)
    assert done.returncode == 1
    assert {r["status"] for r in records(plain)} == {"failed"}
    checked = tmp_path / "checked.jsonl"
    done = run_cli(
        "run", drifted, *base, "--update", "--preflight", "--results", checked, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "preflight: warn  update        PUT only" in done.stderr
    assert {r["status"] for r in records(checked)} == {"updated"}
    assert {e["description"] for e in emulator.environments()} == {"changed"}


def test_preflight_and_sandbox_exclude_each_other(
    cli_env: None, write_jobs: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--preflight` with `--sandbox` is a usage error (the sandbox is the emulator)."""
    jobs = write_jobs(make_specs(1))
    assert main(["run", str(jobs), "--sandbox", "--preflight"]) == 2
    assert "--preflight and --sandbox exclude each other" in capsys.readouterr().err


async def test_a_probe_the_server_creates_anyway_is_archived(serve: Serve) -> None:
    """A server that creates the networking probe despite its invalid metadata gets it archived."""
    env_id = "env_" + "a" * 32

    async def lenient(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/archive"):
            return web.json_response(
                {"id": env_id, "archived_at": "2026-12-07T00:00:00Z"}
            )
        return web.json_response({"id": env_id, "type": "environment"}, status=201)

    server = await serve(lenient)
    settings = ApiSettings(token=Secret(TEST_TOKEN), base_url=server.url)
    async with open_session(concurrency=1, timeout_s=5) as session:
        check, types = await check_networking(ApiClient(session, settings=settings))
    assert check.level == "warn"
    assert "created probes despite their invalid metadata: env_aaaa" in check.message
    assert check.details["created"] == [env_id] * 3
    assert types == ("unrestricted", "limited", "allowlist", "allowed_hosts")
    archived = [r for r in server.requests if r.endswith("/archive")]
    assert archived == [f"POST /api/environments/{env_id}/archive"] * 3
