"""The result log: format, durability, torn lines, resume and compaction."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from provisioner.errors import ResultLogError
from provisioner.results import (
    ErrorInfo,
    Result,
    ResultSink,
    iter_records,
    prepare_resume,
    read_log,
    set_aside,
)
from tests.helpers import T0, TARGET, records, result


def resume(path: Path, names: str, *, retry_failed: bool, target: str = TARGET):
    """prepare_resume for specs named by single letters, each with key ``key-<name>``."""
    return prepare_resume(
        str(path),
        read_log(str(path), target=target),
        target=target,
        input_names=frozenset(names),
        input_keys={n: f"key-{n}" for n in names},
        retry_failed=retry_failed,
    )


def test_each_record_is_one_flushed_json_line(tmp_path: Path) -> None:
    """A record is readable from the file as soon as write returns."""
    path = tmp_path / "results.jsonl"
    sink = ResultSink.open(str(path))
    sink.write(result("a", spec_key=None, target=None))
    assert records(path)[0] == {
        "name": "a",
        "status": "created",
        "id": "env_a",
        "attempts": 1,
        "http_status": 201,
        "error": None,
        "source": "jobs/a.jsonl:1",
        "started_at": "2026-11-29T12:00:00.000000Z",
        "finished_at": "2026-11-29T12:00:00.012500Z",
        "duration_ms": 12.5,
        "spec_key": None,
        "request_id": None,
        "target": None,
    }
    sink.write(result("b", "failed", error=ErrorInfo("http_502", "Bad Gateway")))
    sink.close()
    assert [r["name"] for r in records(path)] == ["a", "b"]
    assert records(path)[1]["error"] == {"type": "http_502", "message": "Bad Gateway"}


def test_a_torn_last_line_is_dropped_when_the_log_is_reopened(tmp_path: Path) -> None:
    """After a kill mid-write, the next run cuts the partial line and appends cleanly."""
    path = tmp_path / "results.jsonl"
    path.write_bytes(orjson.dumps(result("a").to_dict()) + b'\n{"name": "b", "sta')
    assert [r["name"] for _, r in iter_records(str(path))] == ["a"]
    sink = ResultSink.open(str(path))
    sink.write(result("c"))
    sink.close()
    assert [r["name"] for r in records(path)] == ["a", "c"]


def test_a_corrupt_line_in_the_middle_is_an_error_with_its_line(tmp_path: Path) -> None:
    """Only the last line may be torn; damage elsewhere is reported, not skipped."""
    path = tmp_path / "results.jsonl"
    path.write_bytes(b"garbage\n" + orjson.dumps(result("a").to_dict()) + b"\n")
    with pytest.raises(ResultLogError, match=r"results.jsonl:1"):
        list(iter_records(str(path)))


def test_resume_settles_created_and_exists_and_retries_failed(tmp_path: Path) -> None:
    """Created and exists are skipped on resume; failed ones are tried again."""
    path = tmp_path / "results.jsonl"
    sink = ResultSink.open(str(path))
    for r in [result("a"), result("b", "exists"), result("c", "failed")]:
        sink.write(r)
    sink.close()
    state = resume(path, "abc", retry_failed=True)
    assert state.status_of("a") == "created"
    assert state.status_of("b") == "exists"
    assert state.status_of("c") is None
    # The failed record will be replaced by this run's record: it is compacted away.
    assert [r["name"] for r in records(path)] == ["a", "b"]


def test_drift_and_archived_are_written_only_when_set(tmp_path: Path) -> None:
    """A record names its drift and an archived environment after the older fields; otherwise it reads as before."""
    plain = result("a", "exists").to_dict()
    assert "drift" not in plain
    assert "archived" not in plain
    marked = result("b", "exists", drift=("description",), archived=True).to_dict()
    assert list(marked)[-3:] == ["target", "drift", "archived"]
    assert (marked["drift"], marked["archived"]) == (["description"], True)


def test_resume_redoes_a_drifted_exists_only_with_update(tmp_path: Path) -> None:
    """`run --update` redoes a spec whose last record is a drifted exists; archived and updated ones stay done."""
    path = tmp_path / "results.jsonl"
    sink = ResultSink.open(str(path))
    for r in [
        result("a", "exists", drift=("description",)),
        result("b", "exists", drift=("description",), archived=True),
        result("c", "updated", drift=("metadata.team",)),
        result("d", "exists"),
    ]:
        sink.write(r)
    sink.close()
    plain = resume(path, "abcd", retry_failed=True)
    assert sorted(plain.done) == ["a", "b", "c", "d"]
    state = prepare_resume(
        str(path),
        read_log(str(path), target=TARGET),
        target=TARGET,
        input_names=frozenset("abcd"),
        input_keys={n: f"key-{n}" for n in "abcd"},
        retry_failed=True,
        redo_drifted=True,
    )
    assert sorted(state.done) == ["b", "c", "d"]
    assert [r["name"] for r in records(path)] == ["b", "c", "d"]


def test_no_retry_failed_keeps_failed_specs_settled(tmp_path: Path) -> None:
    """With retry_failed off, a failed spec stays as it is."""
    path = tmp_path / "results.jsonl"
    sink = ResultSink.open(str(path))
    sink.write(result("c", "failed"))
    sink.close()
    state = resume(path, "c", retry_failed=False)
    assert state.status_of("c") == "failed"
    assert [r["name"] for r in records(path)] == ["c"]


def test_missing_log_resumes_nothing(tmp_path: Path) -> None:
    """A first run has no log; nothing is settled."""
    state = resume(tmp_path / "none.jsonl", "a", retry_failed=True)
    assert state.done == {}


def test_set_aside_keeps_the_old_log(tmp_path: Path) -> None:
    """--no-resume moves an earlier log aside instead of deleting it."""
    path = tmp_path / "results.jsonl"
    path.write_text("x\n")
    aside = set_aside(str(path), now=T0)
    assert aside is not None
    assert Path(aside).read_text() == "x\n"
    assert not path.exists()
    assert set_aside(str(path), now=T0) is None


def write_log(path: Path, *records: Result) -> None:
    sink = ResultSink.open(str(path))
    for record in records:
        sink.write(record)
    sink.close()


def test_records_of_another_target_are_not_done_and_are_kept(tmp_path: Path) -> None:
    """A sandbox record never settles a spec for the real API, and stays in the log."""
    path = tmp_path / "results.jsonl"
    write_log(path, result("a", target="sandbox"), result("b", target="sandbox"))
    state = resume(path, "ab", retry_failed=True)
    assert state.done == {}
    assert state.foreign == {"sandbox": 2}
    assert [r["target"] for r in records(path)] == ["sandbox", "sandbox"]


def test_a_record_without_a_target_is_foreign(tmp_path: Path) -> None:
    """A record from before targets were recorded is not trusted for any API."""
    path = tmp_path / "results.jsonl"
    write_log(path, result("a", target=None))
    state = resume(path, "a", retry_failed=True)
    assert state.done == {}
    assert state.foreign == {"(no target recorded)": 1}


def test_an_edited_spec_is_not_done_and_its_old_record_is_compacted(
    tmp_path: Path,
) -> None:
    """A record whose spec key differs from the spec's key now is redone, leaving one record."""
    path = tmp_path / "results.jsonl"
    write_log(path, result("a", spec_key="key-of-an-older-a"), result("b"))
    state = resume(path, "ab", retry_failed=True)
    assert state.status_of("a") is None
    assert state.status_of("b") == "created"
    assert [r["name"] for r in records(path)] == ["b"]


def test_a_failed_write_breaks_the_sink(tmp_path: Path) -> None:
    """After one failed write nothing more is written, so a torn line can only be last."""
    path = tmp_path / "full.jsonl"
    path.symlink_to("/dev/full")
    sink = ResultSink.open(str(path))
    with pytest.raises(ResultLogError, match="No space left on device"):
        sink.write(result("a"))
    assert sink.is_broken
    with pytest.raises(ResultLogError, match="earlier"):
        sink.write(result("b"))
    sink.close()


def test_error_messages_are_scrubbed_and_lookup_errors_sit_beside(
    tmp_path: Path,
) -> None:
    """A stored error never holds the token; a lookup's failure is kept beside the create's."""
    path = tmp_path / "results.jsonl"
    sink = ResultSink.open(str(path), scrub=lambda text: text.replace("pt-x", "***"))
    lookup = ErrorInfo("list_walk_limit", "gave up after 3 pages")
    sink.write(
        result("a", "failed", error=ErrorInfo("timeout", "echo pt-x", lookup=lookup))
    )
    sink.close()
    assert records(path)[0]["error"] == {
        "type": "timeout",
        "message": "echo ***",
        "lookup": {"type": "list_walk_limit", "message": "gave up after 3 pages"},
    }
