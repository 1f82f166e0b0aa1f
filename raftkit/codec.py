"""msgpack encodings of what goes into the Raft log and onto disk.

- A **command** is `{"v": 1, "k": kind, "b": body, "f": fence_term}`: `kind` names the
  operation, `body` is any msgpack value (a map in practice) in which the proposer has
  already stamped `now_ms` and ids, `fence_term` (optional) is the term the proposer led
  when it proposed. Decoders ignore envelope keys they do not know, so a newer release
  may add keys without bumping `v`; `v` changes only for an incompatible layout, and a
  decoder refuses a `v` newer than it knows.
- A **snapshot** is `{"v": 1, "s": state}`: the state machine's whole state as msgpack,
  helpers for `StateMachine.snapshot` / `restore`.
- A **dump** is the file pysyncobj calls its full dump (log compaction, and what a
  lagging follower receives): `{"v": 1, "last": entry, "prev": entry, "cluster":
  [addresses], "state": snapshot bytes}`, where an entry is `[command bytes, index,
  term]`. pysyncobj pickles the SyncObj's fields for its own dump; raftkit plugs its
  `serializer`/`deserializer` hooks instead (see `raftkit.replicated_log`), so the
  state in the dump is the state machine's msgpack snapshot, never pickle.

What remains pickle: pysyncobj wraps each replicated call as
`b"\\x00" + pickle((method_id, (payload,)))` in the log and pickles its wire messages.
The payload inside is always the msgpack command above, and frames are authenticated
before pysyncobj unpickles them (see `raftkit.config`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from raftkit.errors import CodecError

__all__ = [
    "COMMAND_VERSION",
    "SNAPSHOT_VERSION",
    "Command",
    "Dump",
    "LogEntry",
    "decode_command",
    "decode_dump",
    "decode_snapshot",
    "encode_command",
    "encode_dump",
    "encode_snapshot",
    "pack",
    "unpack",
]

COMMAND_VERSION = 1
SNAPSHOT_VERSION = 1
DUMP_VERSION = 1

# pysyncobj's log entry: (command bytes, index, term).
LogEntry = tuple[bytes, int, int]


@dataclass(frozen=True, slots=True)
class Command:
    """One state machine operation, as proposed.

    `fence_term` set means: apply only if the entry was appended in this term (the
    proposer's leadership term); otherwise every replica rejects it alike.
    """

    kind: str
    body: Any = None
    fence_term: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise CodecError(f"command kind must be a non-empty string, got {self.kind!r}")
        if self.fence_term is not None and (
            not isinstance(self.fence_term, int) or isinstance(self.fence_term, bool)
        ):
            raise CodecError(f"fence_term must be an int or None, got {self.fence_term!r}")


def pack(value: Any) -> bytes:
    """msgpack with bin/str kept apart; CodecError for values msgpack cannot encode."""
    try:
        return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode as msgpack: {exc}") from None


def unpack(data: bytes) -> Any:
    """Inverse of `pack` (maps may have non-str keys); CodecError for anything invalid."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise CodecError(f"invalid msgpack: {exc}") from None


def encode_command(command: Command) -> bytes:
    envelope: dict[str, Any] = {"v": COMMAND_VERSION, "k": command.kind, "b": command.body}
    if command.fence_term is not None:
        envelope["f"] = command.fence_term
    return pack(envelope)


def decode_command(data: bytes) -> Command:
    envelope = _versioned(unpack(data), COMMAND_VERSION, "command")
    if "k" not in envelope:
        raise CodecError("command without a kind")
    return Command(kind=envelope["k"], body=envelope.get("b"), fence_term=envelope.get("f"))


def encode_snapshot(state: Any) -> bytes:
    return pack({"v": SNAPSHOT_VERSION, "s": state})


def decode_snapshot(data: bytes) -> Any:
    return _versioned(unpack(data), SNAPSHOT_VERSION, "snapshot").get("s")


@dataclass(frozen=True, slots=True)
class Dump:
    """pysyncobj's full dump, in raftkit's msgpack layout (see module docstring)."""

    last: LogEntry
    prev: LogEntry
    cluster: tuple[str, ...]
    state: bytes


def encode_dump(dump: Dump) -> bytes:
    return pack(
        {
            "v": DUMP_VERSION,
            "last": list(dump.last),
            "prev": list(dump.prev),
            "cluster": list(dump.cluster),
            "state": dump.state,
        }
    )


def decode_dump(data: bytes) -> Dump:
    raw = _versioned(unpack(data), DUMP_VERSION, "dump")
    try:
        return Dump(
            last=_entry(raw["last"]),
            prev=_entry(raw["prev"]),
            cluster=tuple(str(a) for a in raw["cluster"]),
            state=bytes(raw["state"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"malformed dump: {exc!r}") from None


def _entry(raw: Any) -> LogEntry:
    command, index, term = raw
    if not isinstance(command, bytes) or not isinstance(index, int) or not isinstance(term, int):
        raise ValueError(f"bad log entry {raw!r}")
    return (command, index, term)


def _versioned(value: Any, known: int, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CodecError(f"{what} must be a msgpack map, got {type(value).__name__}")
    version = value.get("v")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CodecError(f"{what} without a valid version field")
    if version > known:
        raise CodecError(f"{what} version {version} is newer than this release ({known})")
    return value
