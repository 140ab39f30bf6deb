"""Proxies as curl reads them, and a real proxy (Debian's tinyproxy) in front of the
emulator serving HTTPS: every request through ``CONNECT``, ``NO_PROXY`` bypassing it,
its password nowhere."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli.main import main
from provisioner.emulator import Emulator
from provisioner.errors import ConfigError
from provisioner.proxy import ProxyConfig, bypasses, parse_proxy
from tests.helpers import (
    Pki,
    Tinyproxy,
    child_env,
    eventually_sync,
    free_port,
    issue,
    make_specs,
    records,
    spawn_cli,
)

PASSWORD = "s3cret-Proxy-pw"
API = "https://api.example.com/api/v1/cloud"


def route_url(env: dict[str, str], url: str = API, **kw: str) -> str | None:
    """The proxy URL chosen for ``url`` under ``env``, or None for direct."""
    route = ProxyConfig.from_env(env, **kw).route(url)
    return None if route is None else route.url


# --- which proxy, as curl reads the variables ------------------------------------


def test_https_urls_use_https_proxy_lower_case_first():
    """https_proxy wins over HTTPS_PROXY, and HTTP_PROXY is not used for https."""
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}
    assert route_url(env) == "http://lower:2"
    assert route_url({"HTTP_PROXY": "http://plain:3"}) is None


def test_all_proxy_is_the_fallback_for_either_scheme():
    """ALL_PROXY serves https and http when the scheme's own variable is unset."""
    env = {"ALL_PROXY": "http://every:8080"}
    assert route_url(env) == "http://every:8080"
    assert route_url(env, "http://127.0.0.1:9/api") == "http://every:8080"


def test_a_proxy_without_a_scheme_is_http():
    """``proxy.corp:3128`` means ``http://proxy.corp:3128``, as curl reads it."""
    assert route_url({"https_proxy": "proxy.corp:3128"}) == "http://proxy.corp:3128"


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("example.com", "api.example.com", None, True),
        (".example.com", "api.example.com", None, True),
        (".example.com", "example.com", None, True),
        ("*.example.com", "api.example.com", None, True),
        ("ample.com", "api.example.com", None, False),
        ("other.com, example.com", "api.example.com", None, True),
        ("*", "anything.test", None, True),
        ("10.1.2.3", "10.1.2.3", None, True),
        ("10.0.0.0/8", "10.200.3.4", None, True),
        ("10.0.0.0/8", "11.0.0.1", None, False),
        ("[::1]", "::1", None, True),
        ("fd00::/8", "fd12::5", None, True),
        ("example.com:8443", "api.example.com", 8443, True),
        ("example.com:8443", "api.example.com", 443, False),
        ("", "api.example.com", None, False),
        ("API.Example.COM", "api.example.com", None, True),
    ],
)
def test_no_proxy_matches_hosts_suffixes_addresses_and_ranges(
    no_proxy, host, port, direct
):
    """NO_PROXY entries: a host and its subdomains, IPs, CIDR ranges, ports and ``*``."""
    assert bypasses(no_proxy, host, port) is direct


def test_no_proxy_sends_the_api_direct_and_an_explicit_proxy_overrides_it():
    """NO_PROXY bypasses the variables' proxy; --proxy wins over both; none is direct."""
    env = {"https_proxy": "http://p:1", "no_proxy": "example.com"}
    assert route_url(env) is None
    assert route_url(env, explicit="http://mine:2") == "http://mine:2"
    assert route_url({"https_proxy": "http://p:1"}, explicit="none") is None


def test_credentials_leave_the_url_for_a_basic_header():
    """user:password@ becomes Proxy-Authorization: Basic, and the URL keeps neither."""
    route = parse_proxy(
        f"http://svc%40corp:{PASSWORD}@proxy:3128", source="HTTPS_PROXY"
    )
    assert route.url == "http://proxy:3128"
    assert route.authorization is not None
    assert route.authorization.reveal().startswith("Basic ")
    assert PASSWORD not in repr(route)


@pytest.mark.parametrize("value", ["socks5://proxy:1080", "ftp://proxy:21"])
def test_a_proxy_scheme_aiohttp_cannot_speak_is_refused_by_name(value):
    """A socks or ftp proxy is a configuration error naming the variable."""
    with pytest.raises(ConfigError, match=r"ALL_PROXY: .* proxies are not supported"):
        ProxyConfig.from_env({"ALL_PROXY": value})


def test_a_bad_proxy_url_never_echoes_its_password():
    """A proxy URL with a bad port says so without quoting the password."""
    with pytest.raises(ConfigError) as caught:
        ProxyConfig.from_env({"HTTPS_PROXY": f"http://u:{PASSWORD}@proxy:99999999"})
    assert PASSWORD not in str(caught.value)


# --- the command line -------------------------------------------------------------


def test_a_password_on_the_command_line_is_refused_and_not_echoed(capsys, cli_env):
    """--proxy with user:password@ exits 2 pointing to PROVISIONER_PROXY, without the password."""
    code = main(
        ["run", "jobs/demo-onboarding.jsonl", "--proxy", f"http://u:{PASSWORD}@p:1"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "PROVISIONER_PROXY" in err
    assert PASSWORD not in err


# --- through a real proxy -------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA and a certificate for 127.0.0.1."""
    return issue(tmp_path, "127.0.0.1", "localhost")


@pytest.fixture
def https_emulator(make_live_emulator: Callable[..., Emulator], pki: Pki) -> Emulator:
    """A threaded emulator serving HTTPS with the ``pki`` certificate."""
    return make_live_emulator(tls_cert=pki.cert_file, tls_key=pki.key_file)


@dataclass
class Target:
    """The HTTPS emulator and a way to run ``provisioner run`` of N specs against it."""

    emulator: Emulator
    pki: Pki
    tmp_path: Path
    write_jobs: Callable[..., Path]

    def run(self, count: int = 12) -> tuple[int, list[dict[str, Any]]]:
        """The exit code and the records of a run of ``count`` specs."""
        jobs = self.write_jobs(make_specs(count))
        results = self.tmp_path / "results.jsonl"
        code = main([
            "run", str(jobs), "--api-url", self.emulator.url,
            "--ca-file", self.pki.ca_file, "--results", str(results), "--no-progress",
            "--rate", "0", "--backoff", "0", "--concurrency", "4",
        ])  # fmt: skip
        return code, records(results) if results.exists() else []


@pytest.fixture
def target(https_emulator, pki, tmp_path, write_jobs, cli_env) -> Target:
    """The HTTPS emulator, ready for in-process runs with the test token."""
    return Target(https_emulator, pki, tmp_path, write_jobs)


def connects(proxy: Tinyproxy, emulator: Emulator) -> list[str]:
    """The CONNECT requests the proxy was asked for the emulator's port."""
    port = emulator.url.split(":")[2].split("/")[0]
    return [r for r in proxy.requests() if r.startswith(f"CONNECT 127.0.0.1:{port} ")]


def test_every_spec_is_created_through_the_proxy_with_connect(
    target, make_tinyproxy, monkeypatch
):
    """With HTTPS_PROXY set, every spec is created and the proxy tunnelled the connections."""
    proxy = make_tinyproxy()
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    code, recs = target.run()
    assert code == 0
    assert [r["status"] for r in recs] == ["created"] * 12
    assert len(target.emulator.environments()) == 12
    tunnels = connects(proxy, target.emulator)
    assert 1 <= len(tunnels) <= 6  # the pool's connections, each one CONNECT
    assert proxy.requests() == tunnels  # nothing sent to the proxy in the clear


def test_a_proxy_that_is_down_fails_the_run_instead_of_going_direct(
    target, monkeypatch
):
    """When the proxy cannot be reached nothing is created: requests never bypass it."""
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    code, recs = target.run(2)
    assert code == 1
    assert {r["error"]["type"] for r in recs} == {"proxy_error"}  # type: ignore[index]
    assert target.emulator.environments() == []


def test_no_proxy_sends_the_api_direct(target, make_tinyproxy, monkeypatch):
    """With 127.0.0.1 in NO_PROXY the proxy sees nothing and every spec is created."""
    proxy = make_tinyproxy()
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
    code, recs = target.run()
    assert code == 0
    assert len(recs) == 12
    assert proxy.requests() == []


def test_a_proxy_asking_for_credentials_fails_once_per_spec_saying_where_they_go(
    target, make_tinyproxy, monkeypatch
):
    """A 407 is not retried: each spec fails after one attempt with a message naming the fix."""
    proxy = make_tinyproxy(auth=("svc", PASSWORD))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    code, recs = target.run(3)
    assert code == 1
    assert [r["attempts"] for r in recs] == [1, 1, 1]
    assert all("407" in r["error"]["message"] for r in recs)  # type: ignore[index]
    assert target.emulator.environments() == []


def test_basic_auth_through_the_proxy_and_its_password_appears_nowhere(
    https_emulator, pki, make_tinyproxy, tmp_path, write_jobs
):
    """A run with the password in PROVISIONER_PROXY creates every spec; its stderr
    (JSON logs at debug), result log, summary and ``ps`` never show the password."""
    proxy = make_tinyproxy(auth=("svc", PASSWORD))
    jobs = write_jobs(make_specs(20))
    results, summary = tmp_path / "r.jsonl", tmp_path / "s.json"
    https_emulator.faults.update({"latency_ms": 40})  # long enough to look at ps
    env = child_env(PROVISIONER_PROXY=f"http://svc:{PASSWORD}@127.0.0.1:{proxy.port}")
    proc = spawn_cli(
        "run", jobs, "--api-url", https_emulator.url, "--ca-file", pki.ca_file,
        "--results", results, "--summary", summary,
        "--log-format", "json", "--log-level", "debug", "--concurrency", "2",
        env=env, text=False,
    )  # fmt: skip
    # ps while the run works: its requests have begun to reach the API.
    eventually_sync(lambda: https_emulator.stats()["requests"] > 0)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, check=True)  # noqa: S607 - the system's ps
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert len(https_emulator.environments()) == 20
    assert connects(proxy, https_emulator)
    assert b'"proxy.selected"' in err
    assert f"127.0.0.1:{proxy.port}".encode() in err
    for text in (out, err, results.read_bytes(), summary.read_bytes(), ps.stdout):
        assert PASSWORD.encode() not in text
