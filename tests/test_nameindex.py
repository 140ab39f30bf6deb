"""The duplicate-name index: first locations, growth, exact answers on hash collisions."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from provisioner.files.names import NameIndex
from provisioner.files.sources import JobFiles
from provisioner.spec import InvalidSpec, Spec
from tests.helpers import Write, jsonl, spec


def duplicates(*paths: str) -> list[str]:
    """The duplicate-name errors of reading ``paths``, as a user sees them."""
    with JobFiles(paths) as files:
        items = list(files)
    return [
        str(error)
        for item in items
        if isinstance(item, InvalidSpec)
        for error in item.errors
        if error.reason.startswith("duplicate name")
    ]


def test_a_name_added_again_answers_where_it_was_first() -> None:
    """A new name answers None; the same name again answers its first location, not the new one."""
    with NameIndex() as index:
        assert index.add("a", 10) is None
        assert index.add("b", 11) is None
        assert index.add("a", 12) == 10
        assert index.add("a", 13) == 10
        assert len(index) == 2


def test_membership_is_exact() -> None:
    """``in`` is true for added names only: not for near misses, prefixes or non-strings."""
    with NameIndex() as index:
        index.add("env-1", 1)
        assert "env-1" in index
        assert index.location_of("env-1") == 1
        for other in ("env-10", "env-", "ENV-1", "", 1, None):
            assert other not in index
        assert index.location_of("env-2") is None


def test_unusual_names_and_extreme_locations_round_trip() -> None:
    """The empty name, non-ASCII names, a lone surrogate and locations 0 and 2**64-1 are kept exactly."""
    names = ["", "ünïcødé", "\U0001f600", "a\ud800b", "a\ud800"]
    with NameIndex() as index:
        for number, name in enumerate(names):
            assert index.add(name, number) is None
        assert index.add("max", 2**64 - 1) is None
        assert [index.add(name, 99) for name in names] == list(range(len(names)))
        assert index.location_of("max") == 2**64 - 1


@pytest.mark.parametrize("memory_bytes", [1, 4 * 1024 * 1024], ids=["disk", "memory"])
def test_names_survive_many_resizes_and_arena_chunks(memory_bytes: int) -> None:
    """20k names (a dozen table doublings, a few arena chunks) each answer their own first location."""
    count = 20_000
    with NameIndex(memory_bytes=memory_bytes) as index:
        for number in range(count):
            assert index.add(f"environment-name-{number:06d}", number) is None
        assert len(index) == count
        for number in (0, 1, count // 2, count - 2, count - 1):
            assert index.add(f"environment-name-{number:06d}", 0) == number
        assert f"environment-name-{count:06d}" not in index
        assert len(index) == count


@pytest.mark.parametrize(
    "hash_name", [lambda _: 7, lambda name: -len(name)], ids=["constant", "by-length"]
)
def test_colliding_hashes_never_make_a_false_duplicate(
    hash_name: Callable[[str], int],
) -> None:
    """Names whose hashes collide are told apart by their text: no false duplicate, no false member."""
    names = [f"n{number}" for number in range(300)]
    with NameIndex(hash_name=hash_name, memory_bytes=1) as index:
        assert [index.add(name, number) for number, name in enumerate(names)] == [
            None
        ] * len(names)
        assert [index.add(name, 999) for name in names] == list(range(len(names)))
        assert "n300" not in index
        assert "m1" not in index


def test_duplicates_within_and_across_files_name_the_first_location(
    write: Write,
) -> None:
    """A name used again, in the same file or a later one, points at its first use."""
    a = write("a.jsonl", jsonl(spec("x"), spec("y"), spec("x")))
    b = write("b.jsonl", jsonl(spec("z"), spec("y"), spec("z"), spec("x")))
    assert duplicates(a, b) == [
        "a.jsonl:3: name: duplicate name, first at a.jsonl:1",
        "b.jsonl:2: name: duplicate name, first at a.jsonl:2",
        "b.jsonl:3: name: duplicate name, first at b.jsonl:1",
        "b.jsonl:4: name: duplicate name, first at a.jsonl:1",
    ]


def test_a_duplicate_on_the_same_line_is_reported(write: Write) -> None:
    """Two specs with one name on one line of a JSON array: the second is a duplicate."""
    path = write("a.json", json.dumps([spec("x"), spec("x")]))
    assert duplicates(path) == ["a.json:1: name: duplicate name, first at a.json:1"]


def test_each_pass_over_the_files_judges_duplicates_afresh(write: Write) -> None:
    """The run pass after the validate pass does not see every name as already used."""
    path = write("a.jsonl", jsonl(spec("x"), spec("y"), spec("x")))
    with JobFiles([path]) as files:
        passes = [[isinstance(item, Spec) for item in files] for _ in range(2)]
    assert passes == [[True, True, False], [True, True, False]]
