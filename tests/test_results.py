"""The result log: format, durability, torn lines, resume and compaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
    set_aside,
)

T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def result(name: str | None, status: str = "created", **kw: object) -> Result:
    fields: dict[str, object] = {
        "name": name,
        "status": status,
        "id": f"env_{name}" if status in {"created", "exists"} else None,
        "attempts": 1,
        "http_status": 201,
        "error": None,
        "source": "jobs/a.jsonl:1",
        "started_at": T0,
        "finished_at": T0 + timedelta(milliseconds=12.5),
    }
    fields.update(kw)
    return Result(**fields)  # type: ignore[arg-type]


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_each_record_is_one_flushed_json_line(tmp_path: Path) -> None:
    """A record is readable from the file as soon as write returns."""
    path = tmp_path / "results.jsonl"
    sink = ResultSink.open(str(path))
    sink.write(result("a"))
    assert lines(path)[0] == {
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
    }
    sink.write(result("b", "failed", error=ErrorInfo("http_502", "Bad Gateway")))
    sink.close()
    assert [r["name"] for r in lines(path)] == ["a", "b"]
    assert lines(path)[1]["error"] == {"type": "http_502", "message": "Bad Gateway"}


def test_a_torn_last_line_is_dropped_when_the_log_is_reopened(tmp_path: Path) -> None:
    """After a kill mid-write, the next run cuts the partial line and appends cleanly."""
    path = tmp_path / "results.jsonl"
    path.write_bytes(orjson.dumps(result("a").to_dict()) + b'\n{"name": "b", "sta')
    assert [r["name"] for _, r in iter_records(str(path))] == ["a"]
    sink = ResultSink.open(str(path))
    sink.write(result("c"))
    sink.close()
    assert [r["name"] for r in lines(path)] == ["a", "c"]


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
    state = prepare_resume(str(path), input_names=frozenset("abc"), retry_failed=True)
    assert state.is_done("a")
    assert state.is_done("b")
    assert not state.is_done("c")
    # The failed record will be replaced by this run's record: it is compacted away.
    assert [r["name"] for r in lines(path)] == ["a", "b"]


def test_no_retry_failed_keeps_failed_specs_settled(tmp_path: Path) -> None:
    """With retry_failed off, a failed spec stays as it is."""
    path = tmp_path / "results.jsonl"
    sink = ResultSink.open(str(path))
    sink.write(result("c", "failed"))
    sink.close()
    state = prepare_resume(str(path), input_names=frozenset("c"), retry_failed=False)
    assert state.is_done("c")
    assert [r["name"] for r in lines(path)] == ["c"]


def test_missing_log_resumes_nothing(tmp_path: Path) -> None:
    """A first run has no log; nothing is settled."""
    state = prepare_resume(
        str(tmp_path / "none.jsonl"), input_names=frozenset("a"), retry_failed=True
    )
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
