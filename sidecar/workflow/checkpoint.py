"""Saving and loading a workflow actor's state (DESIGN 3.4).

Keys, under the store key `{appID}||{actorType}||{actorID}||{key}`:
- `history-NNNNNN`: one serialized `HistoryEvent` each, 0-based, 6+ digits;
- `inbox-NNNNNN`: one serialized `HistoryEvent` each, numbered by a sequence that only
  grows (`inbox_head` is the number of the oldest), so consumed keys are deleted and new
  ones appended, and no key ever changes meaning while visible;
- `customStatus`: UTF-8, absent when unset;
- `metadata`: msgpack: lengths (`hlen`, `ihead`, `ilen`), `gen`, status and what
  GetInstance reports; once the instance is finished, also whether its execution
  created child workflows (`kids`), so that a purge knows without its history whether
  it has children to purge too. It is the only key `load_state` trusts: history and
  inbox keys outside the ranges it records are ignored (orphans) and later overwritten
  or purged.

The rule of a checkpoint (`plan_checkpoint`):
1. Everything fits one transaction (the normal case): one transaction, guarded by the
   metadata row's version.
2. Otherwise, in order: leading transactions write the keys that are invisible under the
   stored metadata (new history keys at or beyond the stored length, new inbox numbers),
   each also rewriting the stored metadata row unchanged; then the final transaction
   writes the new metadata, `customStatus` and any key that is visible now; then
   trailing transactions delete keys the new metadata no longer covers, each rewriting
   the new metadata unchanged. The visible state therefore changes in one step, when the
   final transaction commits; a crash before leaves only invisible orphans.
3. Every transaction writes the metadata row and expects it at the version the previous
   one returned (the first: the version loaded, 0 if absent). Any other writer,
   a stale second activation included, breaks the chain: `ConflictError`, stop,
   deactivate. Run it as:

       version = loaded_version
       for txn in plan.transactions:
           version = await store.transact(txn.writes, expect=plan.expect(version))

A single row too large for a transaction on its own raises `CheckpointTooLargeError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.store.base import StoreLimits
from sidecar.workflow.errors import CheckpointTooLargeError, CorruptStateError
from sidecar.workflow.rows import pack_row, unpack_row
from sidecar.workflow.state import (
    Metadata,
    OpenWork,
    ParentInfo,
    RequestMark,
    WorkflowState,
    child_instances,
    new_state,
)

__all__ = [
    "CUSTOM_STATUS_KEY",
    "METADATA_KEY",
    "CheckpointPlan",
    "Finished",
    "StoredLayout",
    "Transaction",
    "decode_metadata",
    "encode_metadata",
    "history_key",
    "inbox_key",
    "keys_to_load",
    "layout_of",
    "load_finished",
    "load_state",
    "plan_checkpoint",
    "store_key",
]

METADATA_KEY = "metadata"
CUSTOM_STATUS_KEY = "customStatus"
_FORMAT = 1


def history_key(index: int) -> str:
    return f"history-{index:06d}"


def inbox_key(seq: int) -> str:
    return f"inbox-{seq:06d}"


def store_key(app_id: str, actor_type: str, actor_id: str, key: str) -> str:
    return f"{app_id}||{actor_type}||{actor_id}||{key}"


@dataclass(frozen=True, slots=True)
class StoredLayout:
    """What the store holds for an instance, as far as planning the next save needs."""

    history_len: int = 0
    inbox_head: int = 0
    inbox_len: int = 0
    custom_status: str | None = None
    metadata: bytes | None = None  # the metadata row as stored (None: absent)


def layout_of(state: WorkflowState) -> StoredLayout:
    """The layout once `state` is saved (or as it was loaded)."""
    return StoredLayout(
        history_len=len(state.history),
        inbox_head=state.inbox_head,
        inbox_len=len(state.inbox),
        custom_status=state.custom_status,
        metadata=encode_metadata(state),
    )


@dataclass(frozen=True, slots=True)
class Transaction:
    writes: Mapping[str, bytes | None]  # None = delete


@dataclass(frozen=True, slots=True)
class CheckpointPlan:
    """The transactions of one checkpoint, in order; `final` is the index of the one
    that makes the new state visible; `layout` is the stored layout afterwards."""

    metadata_key: str
    transactions: tuple[Transaction, ...]
    final: int
    layout: StoredLayout

    def expect(self, version: int) -> dict[str, int]:
        return {self.metadata_key: version}


def _parent_row(parent: ParentInfo | None) -> list[Any] | None:
    if parent is None:
        return None
    return [
        parent.instance_id,
        parent.execution_id,
        parent.task_scheduled_id,
        parent.name,
        parent.app_id,
    ]


def encode_metadata(state: WorkflowState) -> bytes:
    meta = state.metadata
    row = {
        "v": _FORMAT,
        "id": state.instance_id,
        "gen": state.generation,
        "hlen": len(state.history),
        "ihead": state.inbox_head,
        "ilen": len(state.inbox),
        "status": state.status,
        "started": state.started,
        "suspended": state.suspended,
        "stalled": state.stalled,
        "name": meta.name,
        "exec": meta.execution_id,
        "created": meta.created_ms,
        "updated": meta.updated_ms,
        "completed": meta.completed_ms,
        "input": meta.input,
        "output": meta.output,
        "failure": meta.failure,
        "parent": _parent_row(meta.parent),
        "terminal": meta.terminal_status,
    }
    if state.earlier_requests:
        row["marks"] = [list(mark) for mark in state.earlier_requests]
    if meta.terminal_status is not None:
        # A pass over the history whenever a finished instance's row is encoded (its
        # last checkpoint, a load of it: 3.6 ms for 20,000 events), which spares every
        # later purge of it a load of its history (`load_finished`).
        row["kids"] = bool(child_instances(state))
    return pack_row(row)


def decode_metadata(raw: bytes) -> dict[str, Any]:
    return unpack_row(raw, _FORMAT, "workflow metadata")


def keys_to_load(metadata_row: bytes) -> list[str]:
    """The keys `load_state` reads, besides `metadata` and `customStatus`."""
    row = decode_metadata(metadata_row)
    history = [history_key(i) for i in range(row["hlen"])]
    return history + [inbox_key(row["ihead"] + i) for i in range(row["ilen"])]


def _events(rows: Mapping[str, bytes], keys: list[str]) -> tuple[pb.HistoryEvent, ...]:
    events = []
    for key in keys:
        if key not in rows:
            raise CorruptStateError(f"workflow state lacks {key!r}")
        events.append(pb.HistoryEvent.FromString(rows[key]))
    return tuple(events)


def load_state(rows: Mapping[str, bytes]) -> WorkflowState | None:
    """The state stored in `rows` (short keys: `metadata`, `history-000000`, ...), or None
    without a metadata row. Keys outside the recorded ranges are ignored."""
    raw = rows.get(METADATA_KEY)
    if raw is None:
        return None
    row = decode_metadata(raw)
    history = _events(rows, [history_key(i) for i in range(row["hlen"])])
    inbox = _events(rows, [inbox_key(row["ihead"] + i) for i in range(row["ilen"])])
    return _state(row, rows.get(CUSTOM_STATUS_KEY), history, inbox)


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished instance as its `metadata` and `customStatus` rows hold it."""

    state: WorkflowState  # without history and inbox
    # Whether its execution created child workflows; None for a row written before this
    # was recorded (then only its history tells).
    has_children: bool | None


def load_finished(rows: Mapping[str, bytes]) -> Finished | None:
    """A finished instance from its `metadata` and `customStatus` rows alone, without its
    history and inbox: everything a status read answers with (a finished instance has
    no start waiting in its inbox), and whether a recursive purge has children to visit.
    None when the rows hold no metadata or the instance is not finished: then only the
    whole state tells its status."""
    raw = rows.get(METADATA_KEY)
    if raw is None:
        return None
    row = decode_metadata(raw)
    if row["terminal"] is None:
        return None
    return Finished(_state(row, rows.get(CUSTOM_STATUS_KEY), (), ()), row.get("kids"))


def _state(
    row: dict[str, Any],
    custom: bytes | None,
    history: tuple[pb.HistoryEvent, ...],
    inbox: tuple[pb.HistoryEvent, ...],
) -> WorkflowState:
    parent = row["parent"]
    metadata = Metadata(
        name=row["name"],
        execution_id=row["exec"],
        created_ms=row["created"],
        updated_ms=row["updated"],
        completed_ms=row["completed"],
        input=row["input"],
        output=row["output"],
        failure=row["failure"],
        parent=ParentInfo(*parent) if parent is not None else None,
        terminal_status=row["terminal"],
    )
    return WorkflowState(
        instance_id=row["id"],
        generation=row["gen"],
        history=history,
        inbox=inbox,
        inbox_head=row["ihead"],
        custom_status=custom.decode() if custom is not None else None,
        metadata=metadata,
        open=OpenWork().after(history),
        started=row["started"],
        suspended=row["suspended"],
        stalled=row["stalled"],
        earlier_requests=_marks(row),
    )


def _marks(row: dict[str, Any]) -> tuple[RequestMark, ...]:
    try:
        return tuple(RequestMark(*mark) for mark in row.get("marks", ()))
    except TypeError as exc:
        raise CorruptStateError(f"workflow metadata has bad request marks: {exc}") from exc


@dataclass(slots=True)
class _Changes:
    hidden: dict[str, bytes]  # keys invisible under the stored metadata
    visible: dict[str, bytes | None]  # keys that must change with the metadata
    dropped: dict[str, None]  # keys the new metadata no longer covers


def _changes(before: StoredLayout, after: WorkflowState) -> _Changes:
    changes = _Changes({}, {}, {})
    # INVARIANT: within a generation history only grows, so keys below the stored
    # length hold the same events; after a continue-as-new the history restarts empty.
    kept = min(before.history_len, len(after.history))
    for index in range(kept, len(after.history)):
        key = history_key(index)
        target = changes.visible if index < before.history_len else changes.hidden
        target[key] = after.history[index].SerializeToString()
    for index in range(len(after.history), before.history_len):
        changes.dropped[history_key(index)] = None
    # INVARIANT: an inbox number, once used, names one event forever.
    old = range(before.inbox_head, before.inbox_head + before.inbox_len)
    new = range(after.inbox_head, after.inbox_head + len(after.inbox))
    for offset, seq in enumerate(new):
        if seq not in old:
            changes.hidden[inbox_key(seq)] = after.inbox[offset].SerializeToString()
    for seq in old:
        if seq not in new:
            changes.dropped[inbox_key(seq)] = None
    if after.custom_status != before.custom_status:
        status = after.custom_status
        changes.visible[CUSTOM_STATUS_KEY] = status.encode() if status is not None else None
    return changes


def _size(key: str, value: bytes | None, limits: StoreLimits) -> int:
    """What one write counts against `limits.max_bytes` (see `write_bytes`)."""
    return len(key.encode()) + (len(value) if value is not None else 0) + limits.op_bytes


def _chunks(
    items: Mapping[str, bytes | None], meta_key: str, meta: bytes, limits: StoreLimits
) -> Iterator[dict[str, bytes | None]]:
    """Greedy chunks of `items`, each with room for the metadata row."""
    base = _size(meta_key, meta, limits)
    chunk: dict[str, bytes | None] = {}
    size = base
    for key, value in items.items():
        item = _size(key, value, limits)
        if base + item > limits.max_bytes or limits.max_ops < 2:
            raise CheckpointTooLargeError(
                f"{key!r} ({item} bytes) cannot fit a transaction with the metadata row "
                f"(limits: {limits.max_ops} ops, {limits.max_bytes} bytes)"
            )
        if len(chunk) + 2 > limits.max_ops or size + item > limits.max_bytes:
            yield {**chunk, meta_key: meta}
            chunk, size = {}, base
        chunk[key] = value
        size += item
    if chunk:
        yield {**chunk, meta_key: meta}


def _fits(writes: Mapping[str, bytes | None], limits: StoreLimits) -> bool:
    size = sum(_size(k, v, limits) for k, v in writes.items())
    return len(writes) <= limits.max_ops and size <= limits.max_bytes


def plan_checkpoint(
    before: StoredLayout,
    after: WorkflowState,
    app_id: str,
    actor_type: str,
    limits: StoreLimits,
) -> CheckpointPlan:
    """The transactions that turn the stored `before` into `after` (see module doc)."""

    def full(key: str) -> str:
        return store_key(app_id, actor_type, after.instance_id, key)

    layout = layout_of(after)
    assert layout.metadata is not None
    meta_key = full(METADATA_KEY)
    changes = _changes(before, after)
    single = {
        **{full(k): v for k, v in changes.hidden.items()},
        **{full(k): v for k, v in changes.visible.items()},
        **{full(k): v for k, v in changes.dropped.items()},
        meta_key: layout.metadata,
    }
    if _fits(single, limits):
        return CheckpointPlan(meta_key, (Transaction(single),), 0, layout)
    final = {**{full(k): v for k, v in changes.visible.items()}, meta_key: layout.metadata}
    if not _fits(final, limits):
        raise CheckpointTooLargeError(
            f"the rows that must commit with the metadata of {after.instance_id!r} "
            f"exceed the store's limits ({limits})"
        )
    old_meta = before.metadata
    if old_meta is None:
        old_meta = encode_metadata(new_state(after.instance_id, after.generation))
    hidden = {full(k): v for k, v in changes.hidden.items()}
    dropped = {full(k): v for k, v in changes.dropped.items()}
    leading = [Transaction(c) for c in _chunks(hidden, meta_key, old_meta, limits)]
    trailing = [Transaction(c) for c in _chunks(dropped, meta_key, layout.metadata, limits)]
    transactions = (*leading, Transaction(final), *trailing)
    return CheckpointPlan(meta_key, transactions, len(leading), layout)
