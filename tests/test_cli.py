"""The command line as users type it: validate, usage errors, and the emulator command."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from provisioner.cli.main import ExitCode, main
from tests.helpers import TEST_TOKEN, make_specs, records, start_cli

pytestmark = pytest.mark.usefixtures("cli_env")


def test_validate_lists_every_error_with_file_line_and_field(write_jobs, capsys):
    """`validate` prints one located line per error and exits 2."""
    specs: list = make_specs(3)
    specs[1]["config"]["networking"] = "unrestricted"
    specs[2]["metdata"] = {}
    jobs = write_jobs(specs)
    assert main(["validate", str(jobs)]) == ExitCode.USAGE
    err = capsys.readouterr().err.splitlines()
    assert f"{jobs}:2: config.networking: expected an object, got string" in err
    assert f"{jobs}:3: metdata: unknown field" in err
    assert err[-1] == "provisioner: 2 of 3 specs are invalid (2 errors)"


def test_validate_accepts_a_valid_file(write_jobs, capsys):
    """A valid file passes with a one-line confirmation on stdout."""
    assert main(["validate", str(write_jobs(make_specs(4)))]) == ExitCode.OK
    assert capsys.readouterr().out == "ok: 4 specs are valid\n"


def test_a_missing_job_file_is_a_usage_error(tmp_path, capsys):
    """A job file that does not exist exits 2 with one line naming it."""
    missing = tmp_path / "nope.jsonl"
    assert main(["run", str(missing), "--sandbox"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert str(missing) in err
    assert err.count("\n") == 1


def test_no_token_is_a_usage_error(write_jobs, monkeypatch, capsys):
    """Without QODER_PAT or --token-file the run refuses to start."""
    monkeypatch.delenv("QODER_PAT")
    assert main(["run", str(write_jobs(make_specs(1)))]) == ExitCode.USAGE
    assert "no API token: set QODER_PAT or pass --token-file" in capsys.readouterr().err


def test_token_file_is_read(live_emulator, write_jobs, tmp_path, monkeypatch):
    """--token-file supplies the token instead of the environment."""
    monkeypatch.delenv("QODER_PAT")
    token_file = tmp_path / "token"
    token_file.write_text(TEST_TOKEN + "\n")
    code = main(
        [
            "run",
            str(write_jobs(make_specs(2))),
            "--api-url",
            live_emulator.url,
            "--token-file",
            str(token_file),
            "--results",
            str(tmp_path / "r.jsonl"),
        ]
    )
    assert code == ExitCode.OK


@pytest.mark.parametrize(
    "flags",
    [
        ["--concurrency", "0"],
        ["--rate", "-1"],
        ["--max-attempts", "0"],
        ["--timeout", "0"],
    ],
)
def test_impossible_settings_exit_2(write_jobs, capsys, flags):
    """A setting that cannot work is refused with one line and exit 2."""
    assert (
        main(["run", str(write_jobs(make_specs(1))), "--sandbox", *flags])
        == ExitCode.USAGE
    )
    assert capsys.readouterr().err.startswith("provisioner: error:")


def test_sandbox_runs_a_job_without_any_token(write_jobs, tmp_path, monkeypatch):
    """--sandbox needs no token: it starts its own emulator."""
    monkeypatch.delenv("QODER_PAT")
    results = tmp_path / "r.jsonl"
    assert (
        main(
            [
                "run",
                str(write_jobs(make_specs(3))),
                "--sandbox",
                "--results",
                str(results),
            ]
        )
        == 0
    )
    assert len(results.read_text().splitlines()) == 3


def test_env_vars_set_flag_defaults(live_emulator, write_jobs, tmp_path, monkeypatch):
    """PROVISIONER_* variables and QODER_API_URL stand in for flags."""
    results = tmp_path / "from-env.jsonl"
    monkeypatch.setenv("QODER_API_URL", live_emulator.url)
    monkeypatch.setenv("PROVISIONER_RESULTS", str(results))
    monkeypatch.setenv("PROVISIONER_CONCURRENCY", "2")
    assert main(["run", str(write_jobs(make_specs(3)))]) == 0
    assert len(results.read_text().splitlines()) == 3
    assert live_emulator.stats()["max_in_flight"] <= 2


async def test_provisioner_emulator_serves_until_sigterm(tmp_path):
    """`provisioner emulator --port 0` prints its URL, serves the API, and stops on SIGTERM."""
    proc = await start_cli("emulator", "--port", "0", stderr=None)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
    url = next(w for w in line.split() if w.startswith("http://"))
    assert TEST_TOKEN not in line
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
        async with session.get(f"{url}/environments", headers=headers) as resp:
            assert resp.status == 200
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0


def test_version_is_printed(capsys):
    """--version names the package version."""
    from provisioner import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"provisioner {__version__}"


def test_sandbox_faults_are_retried_and_each_spec_created_once(write_jobs, tmp_path):
    """--sandbox-faults makes the sandbox misbehave; the run still creates every spec once."""
    results = tmp_path / "r.jsonl"
    faults = "error_503=0.2,reset_after_commit=0.1,retry_after_s=null,seed=5"
    argv = [
        "run",
        str(write_jobs(make_specs(30))),
        "--sandbox",
        "--sandbox-faults",
        faults,
        "--backoff",
        "0",
        "--rate",
        "0",
        "--max-attempts",
        "20",
        "--results",
        str(results),
    ]
    assert main(argv) == ExitCode.OK
    log = records(results)
    assert {r["status"] for r in log} == {"created"}
    assert len({r["id"] for r in log}) == 30
    assert max(r["attempts"] for r in log) > 1


def test_bad_sandbox_faults_are_a_usage_error(write_jobs, capsys):
    """An unknown fault name is refused before anything runs."""
    argv = [
        "run",
        str(write_jobs(make_specs(1))),
        "--sandbox",
        "--sandbox-faults",
        "bogus=1",
    ]
    assert main(argv) == ExitCode.USAGE
    assert "--sandbox-faults: bogus" in capsys.readouterr().err


# --- the command line keeps its word ------------------------------------------


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("provisioner: error:")
    return err


@pytest.mark.parametrize(
    "args",
    [
        ["--token", "pt-secret-on-argv"],
        ["--token=pt-secret-on-argv"],
        ["--pat", "pt-secret-on-argv"],
    ],
)
def test_a_token_on_the_command_line_is_refused_without_echoing_it(
    write_jobs, capsys, args
):
    """`--token pt-...` is not an abbreviation of --token-file: refused, and the value is never printed."""
    code = main(["run", str(write_jobs(make_specs(1))), *args])
    assert code == ExitCode.USAGE
    err = one_error_line(capsys)
    assert "pt-secret-on-argv" not in err
    assert "QODER_PAT" in err


@pytest.mark.parametrize("flag", ["--concurrenc", "--max-att", "--res"])
def test_long_options_are_never_abbreviated(write_jobs, capsys, flag):
    """A prefix of a flag is an unknown option, not that flag."""
    assert main(["run", str(write_jobs(make_specs(1))), flag, "3"]) == ExitCode.USAGE
    assert f"unknown option {flag}" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--log-level", "loud"], "--log-level"),
        (["--log-format", "bogus"], "--log-format"),
        (["--on-conflict", "bogus"], "--on-conflict"),
        (["--rate", "nan"], "--rate"),
        (["--concurrency", "lots"], "--concurrency"),
    ],
)
def test_a_bad_flag_value_is_one_usage_line(write_jobs, capsys, flags, named):
    """Every flag value is checked: exit 2 and one line naming the flag."""
    assert main(["run", str(write_jobs(make_specs(1))), "--sandbox", *flags]) == 2
    assert named in one_error_line(capsys)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PROVISIONER_ON_CONFLICT", "bogus"),
        ("PROVISIONER_LOG_FORMAT", "bogus"),
        ("PROVISIONER_LOG_LEVEL", "loud"),
        ("PROVISIONER_CONCURRENCY", "0"),
        ("PROVISIONER_RATE", "inf"),
        ("PROVISIONER_SKIP_INVALID", "maybe"),
        ("PROVISIONER_RESUME", "perhaps"),
    ],
)
def test_a_bad_environment_variable_is_one_usage_line(
    write_jobs, capsys, monkeypatch, variable, value
):
    """A variable gets the same check as its flag: exit 2 and one line naming the variable."""
    monkeypatch.setenv(variable, value)
    assert main(["run", str(write_jobs(make_specs(1))), "--sandbox"]) == 2
    assert variable in one_error_line(capsys)


def test_a_switch_variable_reads_true_and_false(
    write_jobs, tmp_path, capsys, monkeypatch
):
    """PROVISIONER_SKIP_INVALID=true runs the valid specs and records the invalid one."""
    specs: list = make_specs(2)
    specs[1]["config"] = "cloud"
    monkeypatch.setenv("PROVISIONER_SKIP_INVALID", "true")
    results = tmp_path / "r.jsonl"
    code = main(["run", str(write_jobs(specs)), "--sandbox", "--results", str(results)])
    assert code == ExitCode.USAGE  # an invalid spec was recorded
    statuses = [r["status"] for r in records(results)]
    assert sorted(statuses) == ["created", "invalid"]


@pytest.mark.parametrize("source", ["flag", "env"])
def test_sandbox_faults_without_sandbox_is_a_usage_error(
    write_jobs, capsys, monkeypatch, source
):
    """--sandbox-faults needs --sandbox, and says so instead of being ignored."""
    args = ["run", str(write_jobs(make_specs(1)))]
    if source == "flag":
        args += ["--sandbox-faults", "error_503=0.1"]
    else:
        monkeypatch.setenv("PROVISIONER_SANDBOX_FAULTS", "error_503=0.1")
    assert main(args) == ExitCode.USAGE
    assert "needs --sandbox" in one_error_line(capsys)


@pytest.mark.parametrize(
    "url",
    [
        "http://192.0.2.10/api/v1/cloud",
        "http://127.0.0.1.evil.example/api",
        "http://localhost.evil/api",
    ],
)
def test_plain_http_to_a_remote_host_is_refused(write_jobs, capsys, url):
    """The token is never sent over plain http to anything but loopback without --allow-insecure-http."""
    assert main(["run", str(write_jobs(make_specs(1))), "--api-url", url]) == 2
    assert "--allow-insecure-http" in one_error_line(capsys)


def test_plain_http_to_loopback_is_allowed(live_emulator, write_jobs, tmp_path):
    """http://127.0.0.1 (the emulator) needs no flag."""
    args = ["--api-url", live_emulator.url, "--results", str(tmp_path / "r.jsonl")]
    assert main(["run", str(write_jobs(make_specs(1))), *args]) == ExitCode.OK
