"""A set of names, each with where it was first seen, in 24 to 32 bytes of memory a name.

The duplicate-name check of a job file must remember every name it has read. As
Python strings in a dict that costs over 100 bytes a name (more for long ones:
a name has no length limit until the spec is validated), so a million-spec file
would hold hundreds of MB. :class:`NameIndex` keeps instead, in memory:

* a 64-bit hash of each name (``array('Q')``, 8 bytes) and where its record
  starts in the arena (``array('Q')``, 8 bytes), in insertion order;
* an open-addressing table of entry numbers (``array('I')``, linear probing,
  at most half full, doubled when it is): 8 to 16 bytes a name.

The answer is exact, never a guess from the hash: on a hash match, the stored
name is compared with the one asked about. Names are kept for that as UTF-8,
next to their location, in an append-only arena that stays in memory up to
``memory_bytes`` and moves to an unnamed temporary file past it (as the stdin
spool does). Only a hash match reads it back, which is a real duplicate (an
error in the job file) or a 64-bit collision (about 3e-8 for a million names):
one seek and one read, however far back the first name is. (Re-reading the job
file instead would need every reader to report byte offsets, a YAML entry's
name may come from its defaults, and a pass per duplicated name is quadratic.)
The arena takes 8 bytes plus the UTF-8 name a name, on disk past 4 MB.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from tempfile import SpooledTemporaryFile

#: Bytes of the name arena kept in memory before it moves to a temporary file.
ARENA_MEMORY_BYTES = 4 * 1024 * 1024
_HASH_MASK = (1 << 64) - 1
_LOCATION_BYTES = 8
_CHUNK_BYTES = 64 * 1024
_MIN_SLOTS = 8


class NameIndex:
    """Distinct names, each with the location (an opaque int) where it was first added.

    Args:
        hash_name: any function of a name to an int (the low 64 bits are used);
            Python's ``hash``, salted per process, suits an index that lives in
            one process. Tests inject one that collides.
        memory_bytes: arena bytes kept in memory before the rest goes to disk.

    Close it (or use it as a context manager) to drop the arena's temporary file.
    """

    def __init__(
        self,
        *,
        hash_name: Callable[[str], int] = hash,
        memory_bytes: int = ARENA_MEMORY_BYTES,
    ) -> None:
        self._hash_name = hash_name
        self._hashes = array("Q")
        self._starts = array("Q")
        # Entry number + 1 per slot; 0 is an empty slot.
        self._slots = array("I", [0]) * _MIN_SLOTS
        self._mask = _MIN_SLOTS - 1
        self._arena = SpooledTemporaryFile(max_size=memory_bytes)  # noqa: SIM115 - closed by close()
        # The newest records, written to the arena a chunk at a time (a write costs ~0.2 µs).
        self._tail = bytearray()
        self._flushed = 0

    def add(self, name: str, location: int) -> int | None:
        """Note that ``name`` is at ``location`` unless it is already here.

        ``location`` is any int in ``[0, 2**64)``.

        Returns:
            ``None`` if the name is new, else the location it was first added with.
        """
        digest = self._hash_name(name) & _HASH_MASK
        encoded = name.encode("utf-8", "surrogatepass")
        slot, first = self._find(digest, encoded)
        if first is not None:
            return first
        # The insert, inlined: it runs once a spec, and a call costs ~0.1 µs.
        tail = self._tail
        self._hashes.append(digest)
        self._starts.append(self._flushed + len(tail))
        tail += location.to_bytes(_LOCATION_BYTES, "little")
        tail += encoded
        if len(tail) >= _CHUNK_BYTES:
            self._flush()
        self._slots[slot] = count = len(self._hashes)
        if 2 * count > len(self._slots):
            self._grow()
        return None

    def location_of(self, name: str) -> int | None:
        """Where ``name`` was first added, or ``None`` if it never was."""
        digest = self._hash_name(name) & _HASH_MASK
        return self._find(digest, name.encode("utf-8", "surrogatepass"))[1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.location_of(name) is not None

    def __len__(self) -> int:
        return len(self._hashes)

    def close(self) -> None:
        """Drop the arena (and its temporary file, if it has one)."""
        self._arena.close()

    def __enter__(self) -> NameIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _find(self, digest: int, encoded: bytes) -> tuple[int, int | None]:
        """The name's slot and first location; or the free slot it would take, and ``None``."""
        slots, hashes, mask = self._slots, self._hashes, self._mask
        slot = digest & mask
        while entry := slots[slot]:
            if hashes[entry - 1] == digest:
                location, stored = self._entry(entry - 1)
                if stored == encoded:
                    return slot, location
            slot = (slot + 1) & mask
        return slot, None

    def _flush(self) -> None:
        """Write the tail to the arena: whole records, so none straddles the two."""
        self._arena.seek(self._flushed)
        self._arena.write(self._tail)
        self._flushed += len(self._tail)
        self._tail.clear()

    def _entry(self, number: int) -> tuple[int, bytes]:
        """Entry ``number``'s location and UTF-8 name, read back from the arena."""
        start = self._starts[number]
        is_last = number + 1 == len(self._starts)
        end = self._flushed + len(self._tail) if is_last else self._starts[number + 1]
        if start >= self._flushed:
            record = bytes(self._tail[start - self._flushed : end - self._flushed])
        else:  # flushed with its whole chunk: wholly in the arena
            self._arena.seek(start)
            record = self._arena.read(end - start)
        location = int.from_bytes(record[:_LOCATION_BYTES], "little")
        return location, record[_LOCATION_BYTES:]

    def _grow(self) -> None:
        """Double the table, so that it stays at most half full (short probes)."""
        size = 2 * len(self._slots)
        mask = size - 1
        slots = array("I", [0]) * size
        for entry, digest in enumerate(self._hashes, start=1):
            slot = digest & mask
            while slots[slot]:
                slot = (slot + 1) & mask
            slots[slot] = entry
        self._slots, self._mask = slots, mask


__all__ = ["ARENA_MEMORY_BYTES", "NameIndex"]
