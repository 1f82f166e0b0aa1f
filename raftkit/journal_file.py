"""The log file of a `DurableJournal`: its byte layout, and the steps that open, scan and
rewrite it durably.

Kept apart from `raftkit.journal` so that the format, which must never change under an
existing data directory, sits in one small place, and reading a log file back is a pure
function of its bytes (`scan`), separate from the journal's group commit and truncation.

Log file: header `RAFTKITJ` + u32 format version + u32 reserved; then records
`u32 length, u32 crc32, u64 index, u64 term, command bytes` (little endian; the CRC
covers length, index, term and command). The meta file is `raftkit.journal_meta`'s.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from raftkit.codec import LogEntry
from raftkit.errors import JournalError

__all__ = [
    "HEADER",
    "RECORD",
    "Scanned",
    "fsync_directory",
    "header",
    "open_log",
    "record",
    "scan",
    "write_log",
]

_MAGIC = b"RAFTKITJ"
_FORMAT_VERSION = 1
HEADER = struct.Struct("<8sII")
RECORD = struct.Struct("<IIQQ")  # length, crc, index, term
_CRC_PART = struct.Struct("<IQQ")  # length, index, term


def fsync_directory(path: Path) -> None:
    """Make renames and creations inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def header() -> bytes:
    return HEADER.pack(_MAGIC, _FORMAT_VERSION, 0)


def record(command: bytes, index: int, term: int) -> bytes:
    crc = zlib.crc32(command, zlib.crc32(_CRC_PART.pack(len(command), index, term)))
    return RECORD.pack(len(command), crc, index, term) + command


@dataclass(slots=True)
class Scanned:
    """The records of a log file that recovery keeps."""

    entries: list[LogEntry]
    offsets: list[int]  # file offset of each entry's record
    end: int  # file offset just past the last record kept; anything after is torn


def scan(data: bytes, path: Path) -> Scanned:
    """Read a log file's records up to the first one that is cut short, fails its CRC or
    does not follow its predecessor (the torn tail a crash leaves)."""
    if len(data) < HEADER.size:
        raise JournalError(f"journal {path} is too short for its header")
    magic, version, _ = HEADER.unpack_from(data, 0)
    if magic != _MAGIC or version != _FORMAT_VERSION:
        raise JournalError(f"{path} is not a raftkit journal (format {version})")
    entries: list[LogEntry] = []
    offsets: list[int] = []
    offset = HEADER.size
    while offset + RECORD.size <= len(data):
        length, crc, idx, term = RECORD.unpack_from(data, offset)
        end = offset + RECORD.size + length
        if end > len(data):
            break
        command = data[offset + RECORD.size : end]
        if zlib.crc32(command, zlib.crc32(_CRC_PART.pack(length, idx, term))) != crc:
            break
        if entries and (idx != entries[-1][1] + 1 or term < entries[-1][2]):
            break
        offsets.append(offset)
        entries.append((command, idx, term))
        offset = end
    return Scanned(entries, offsets, offset)


def open_log(path: Path) -> tuple[int, Scanned, int]:
    """Open the log file at `path`, made with its header if new, and read its records.
    Returns the file descriptor, what `scan` kept and the file's size: larger than the
    kept end when there is a torn tail, which the caller truncates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # A crash while the header was first written leaves a shorter file.
        if created or os.fstat(fd).st_size < HEADER.size:
            os.pwrite(fd, header(), 0)
            os.fsync(fd)
            fsync_directory(path.parent)
            return fd, Scanned([], [], HEADER.size), HEADER.size
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
        return fd, scan(data, path), len(data)
    except BaseException:
        os.close(fd)
        raise


def write_log(path: Path, entries: Iterable[LogEntry]) -> None:
    """Write a whole log file holding `entries` and fsync it (it is renamed into place
    by the caller, who then fsyncs the directory)."""
    with open(path, "wb") as f:
        f.write(header())
        for command, idx, term in entries:
            f.write(record(command, idx, term))
        f.flush()
        os.fsync(f.fileno())
