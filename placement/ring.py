"""Consistent hashing for actor placement: which host owns an actor id.

Every sidecar derives the same rings from the replicated host list, so everything here
is a pure function of its arguments, hashed with BLAKE2b (never Python's salted `hash()`),
and pinned by golden values in `tests/placement/ring_golden.json`. Changing any constant
or rule below re-places actors across the cluster: treat it as a protocol change.

The scheme: two-sided multi-probe consistent hashing.
- Each host owns `vnodes` points on the 64-bit circle (`vnode_positions`).
- Each actor id makes `PROBES` probes (`probe_positions`), independent 64-bit words of
  one BLAKE2b-512 digest of the id.
- The owner is the host of the point nearest to any probe, in either direction. Ties go
  to the lower probe index, then to the point clockwise of the probe; a position claimed
  by two hosts belongs to the smaller name.

Each point's score for a key, (distance to the nearest probe, probe index, side),
depends on that point and key alone, and the owner is the point with the least score.
So adding a host can only move keys to it, removing one moves only its keys, and the
ring is a function of the host *set*, whatever the order the names came in.

Why this scheme. Figures are max/mean keys per host for 100 hosts and 100k keys (the
sampling noise of 1000 keys a host alone gives about 1.08), measured on the development
VM: 2 vCPUs shared with other test runs, CPython 3.11 built without PGO.
- A plain ring (the successor of one hash among N*v points): 1.20-1.28 at 100 vnodes
  (the issue measured 1.15-1.22 even at 400). A host's share is the sum of v random
  gaps, spread 1/sqrt(v) = 10%.
- Multi-probe (k probes, nearest successor wins) averages each point's share over many
  keys. The probes must be independent words: with h + i*C, every point keeps the same
  gaps at every offset, and 8 or 32 probes still gave 1.20-1.25 (spread 7.5%).
  Independent probes: k=2 1.14-1.20, k=4 1.13-1.17, k=8 1.10-1.11.
- Two-sided (nearest point either way) does about what doubling k does, for one `abs`
  per probe: share spread 3.1% at k=3, 2.7% at k=4 (2 host sets in 40 above 1.15),
  2.0% at k=6, 1.8% at k=8. Over 450 random 100-host sets at k=6: median 1.095, p90
  1.12, worst 1.170; 2 sets (0.4%) exceed 1.15. k=8 did no better over 300 sets (worst
  1.168, one above 1.15) and costs a third more lookup time, so PROBES is 6.
- Rendezvous hashing balances exactly but costs O(hosts) per lookup; a slot table filled
  by rendezvous would need 2**18+ slots to keep 100 hosts' slot counts within 2%, tens
  of millions of hashes per build in pure Python.
- Speed: a dense table over the top bits of the circle holds, per bucket, the point
  nearest to all of it, so a probe costs a shift, an index, a subtraction and an `abs`.
  Buckets that straddle a cell boundary (~4%; ~10% at 1000 hosts, where the table size
  is capped) hold one shared `_Straddle` that bisects instead. Lookups of distinct ids
  (bench/ring_lookup.py, best 20k-lookup window): ~650k/s at 10 hosts, 540-580k/s at
  100 (420-490k/s averaged over seconds on the shared VM), ~275k/s at 1000, where the
  8 MiB table and 100k point objects miss the CPU caches on most probes. A dict in
  front of `lookup` serves repeats at 8-12M/s. Build: ~11 ms for 100 hosts, ~125 ms
  for 1000.

Actor ids are any `str` encodable as UTF-8, the empty string included: the ring is a total
function on ids, and deciding which ids are valid belongs to the API edge that receives
them (protobuf strings are always valid UTF-8). A lone surrogate raises
`UnicodeEncodeError`.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from hashlib import blake2b
from itertools import pairwise, repeat
from typing import Final, Protocol

from placement.errors import NoHostsError

__all__ = [
    "DEFAULT_VNODES",
    "PROBES",
    "HashRing",
    "HostLike",
    "RingSet",
    "probe_positions",
    "stable_hash64",
    "vnode_positions",
]

DEFAULT_VNODES: Final = 100
PROBES: Final = 6  # INVARIANT: HashRing.lookup is unrolled for exactly this many probes.

_CIRCLE: Final = 1 << 64
_VNODE_PERSON: Final = b"af.ring.vnode"
_WORDS_PER_BLOCK: Final = 8  # a BLAKE2b-512 digest holds eight 64-bit words
_BLOCK: Final = struct.Struct(">8Q")
_PROBES_OF: Final = struct.Struct(f">{PROBES}Q").unpack_from
# About 2**4 buckets per point: ~4% of buckets straddle a cell boundary. Larger tables
# straddle less but miss the CPU caches more, and measured no faster at 100 hosts.
# 2**20 entries (8 MiB) is the cap, reached from 32768 points (328 hosts at 100 vnodes).
_TABLE_HEADROOM_BITS: Final = 4
_TABLE_MIN_BITS: Final = 8
_TABLE_MAX_BITS: Final = 20


def stable_hash64(data: str) -> int:
    """The project's stable 64-bit hash of a string: BLAKE2b with an 8-byte digest of its
    UTF-8 bytes, read big-endian. Identical in every process and on every platform."""
    return int.from_bytes(blake2b(data.encode(), digest_size=8).digest(), "big")


def probe_positions(actor_id: str) -> tuple[int, ...]:
    """The `PROBES` positions an actor id probes: the first big-endian 64-bit words of the
    unkeyed BLAKE2b-512 digest of its UTF-8 bytes."""
    probes: tuple[int, ...] = _PROBES_OF(blake2b(actor_id.encode()).digest())
    return probes


def vnode_positions(host: str, vnodes: int = DEFAULT_VNODES) -> list[int]:
    """A host's points: position i is big-endian word i % 8 of BLAKE2b-512 of the host's
    UTF-8 name, with salt = i // 8 as 16 big-endian bytes and person = b"af.ring.vnode".
    A longer list extends a shorter one, so raising `vnodes` only adds points."""
    if type(vnodes) is not int or vnodes < 1:
        raise ValueError(f"vnodes must be a positive int, got {vnodes!r}")
    data = host.encode()
    positions: list[int] = []
    for block in range(-(-vnodes // _WORDS_PER_BLOCK)):
        digest = blake2b(data, salt=block.to_bytes(16, "big"), person=_VNODE_PERSON).digest()
        positions.extend(_BLOCK.unpack(digest))
    del positions[vnodes:]
    return positions


class _Straddle:
    """Stands in the bucket table for every bucket that straddles a cell boundary:
    `straddle - p` answers like a plain entry (nearest point minus p) by bisection."""

    __slots__ = ("_bounds", "_points")

    def __init__(self, bounds: list[int], points: list[int]) -> None:
        self._bounds = bounds  # _bounds[k]: first position nearer _points[k + 1]
        self._points = points

    def __sub__(self, probe: int) -> int:
        nearest: int = self._points[bisect_right(self._bounds, probe)]
        return nearest - probe


class HashRing:
    """An immutable ring over a set of host names; equal sets give equal rings.

    `lookup` is the hot path; build cost is O(points) plus a bucket table of at most
    2**20 entries, so rebuild per table version rather than mutate."""

    __slots__ = ("_fast", "_hosts", "_vnodes")

    def __init__(self, hosts: Iterable[str], *, vnodes: int = DEFAULT_VNODES) -> None:
        if isinstance(hosts, str):
            raise TypeError("hosts must be a collection of names, not one str")
        names = tuple(sorted(set(hosts)))
        if not names:
            raise ValueError("a ring needs at least one host")
        self._hosts = names
        self._vnodes = vnodes
        owner: dict[int, str] = {}
        for name in reversed(names):  # smaller names overwrite: they win collisions
            for position in vnode_positions(name, vnodes):
                owner[position] = name
        # Extend the circle by one point each way so neighbours never wrap.
        points = sorted(owner)
        first, last = points[0], points[-1]
        owner[last - _CIRCLE] = owner[last]
        owner[first + _CIRCLE] = owner[first]
        points = [last - _CIRCLE, *points, first + _CIRCLE]
        # bounds[k]: the first position nearer points[k + 1] than points[k] (ties go
        # clockwise), so the cell of points[k] is [bounds[k - 1], bounds[k]).
        bounds = [(a + b + 1) >> 1 for a, b in pairwise(points)]
        table, shift = _bucket_table(points, bounds)
        self._fast = (table, shift, owner)

    @property
    def hosts(self) -> tuple[str, ...]:
        """The distinct host names, sorted."""
        return self._hosts

    @property
    def vnodes(self) -> int:
        return self._vnodes

    def lookup(self, actor_id: str) -> str:
        """The host that owns `actor_id`."""
        # Unrolled running minimum: a tuple, min() and index() cost a fifth more.
        # Strict < keeps the lower probe index on a tie.
        table, shift, owner = self._fast
        p, p1, p2, p3, p4, p5 = _PROBES_OF(blake2b(actor_id.encode()).digest())
        best = abs(table[p >> shift] - p)
        d = abs(table[p1 >> shift] - p1)
        if d < best:
            best, p = d, p1
        d = abs(table[p2 >> shift] - p2)
        if d < best:
            best, p = d, p2
        d = abs(table[p3 >> shift] - p3)
        if d < best:
            best, p = d, p3
        d = abs(table[p4 >> shift] - p4)
        if d < best:
            best, p = d, p4
        if abs(table[p5 >> shift] - p5) < best:
            p = p5
        return owner[table[p >> shift] - p + p]

    def owner_of_probes(self, probes: Sequence[int]) -> str:
        """The owner for explicit probe positions (any number of 64-bit ints); `lookup`
        is `owner_of_probes(probe_positions(actor_id))`, unrolled."""
        if not probes or not all(0 <= p < _CIRCLE for p in probes):
            raise ValueError("probes must be one or more ints in [0, 2**64)")
        table, shift, owner = self._fast
        dist = [abs(table[p >> shift] - p) for p in probes]
        p = probes[dist.index(min(dist))]
        return owner[table[p >> shift] - p + p]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HashRing):
            return NotImplemented
        return (self._hosts, self._vnodes) == (other._hosts, other._vnodes)

    def __hash__(self) -> int:
        return hash((self._hosts, self._vnodes))

    def __repr__(self) -> str:
        return f"HashRing({len(self._hosts)} hosts, vnodes={self._vnodes})"


def _bucket_table(points: list[int], bounds: list[int]) -> tuple[list[int | _Straddle], int]:
    """Split the circle into 2**bits equal buckets; a bucket inside one cell holds that
    cell's point, a bucket with a boundary strictly inside holds the shared `_Straddle`."""
    bits = (len(points) - 2).bit_length() + _TABLE_HEADROOM_BITS
    bits = max(_TABLE_MIN_BITS, min(_TABLE_MAX_BITS, bits))
    shift = 64 - bits
    inner = (1 << shift) - 1
    straddle = _Straddle(bounds, points)
    table: list[int | _Straddle] = []
    fill, mark = table.extend, table.append
    filled = 0  # buckets [0, filled) are done
    cell = 0  # index in points of the cell holding bucket `filled`'s start
    for bound in bounds:
        if bound >= _CIRCLE:
            break
        if bound > 0:
            bucket = bound >> shift
            if bucket >= filled:
                fill(repeat(points[cell], bucket - filled))
                filled = bucket
                if bound & inner:
                    mark(straddle)
                    filled += 1
        cell += 1
    fill(repeat(points[cell], (1 << bits) - filled))
    return table, shift


class HostLike(Protocol):
    """What `RingSet` needs of a host: the table's host records satisfy it."""

    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def actor_types(self) -> Sequence[str]: ...


class RingSet:
    """One ring per (namespace, actor type), over the hosts that support that type.

    Types served by the same host set share one `HashRing`, and each ring is built on
    its first lookup, so a sidecar pays only for the types it asks about. Equality is by
    membership and vnodes."""

    __slots__ = ("_members", "_rings", "_shared", "_vnodes")

    def __init__(self, hosts: Iterable[HostLike], *, vnodes: int = DEFAULT_VNODES) -> None:
        if type(vnodes) is not int or vnodes < 1:
            raise ValueError(f"vnodes must be a positive int, got {vnodes!r}")
        members: dict[tuple[str, str], set[str]] = {}
        for host in hosts:
            for actor_type in host.actor_types:
                members.setdefault((host.namespace, actor_type), set()).add(host.name)
        self._members = {key: frozenset(names) for key, names in members.items()}
        self._vnodes = vnodes
        self._rings: dict[tuple[str, str], HashRing] = {}  # memo, filled by ring()
        self._shared: dict[frozenset[str], HashRing] = {}

    @property
    def types(self) -> frozenset[tuple[str, str]]:
        """Every (namespace, actor type) that some host supports."""
        return frozenset(self._members)

    def hosts_for(self, namespace: str, actor_type: str) -> frozenset[str]:
        """The names of the hosts that support the type; empty when none do."""
        return self._members.get((namespace, actor_type), frozenset())

    def ring(self, namespace: str, actor_type: str) -> HashRing:
        """The ring of the type; raises `NoHostsError` when no host supports it."""
        key = (namespace, actor_type)
        ring = self._rings.get(key)
        if ring is None:
            names = self._members.get(key)
            if names is None:
                raise NoHostsError(namespace, actor_type)
            ring = self._shared.get(names)
            if ring is None:
                ring = self._shared[names] = HashRing(names, vnodes=self._vnodes)
            self._rings[key] = ring
        return ring

    def lookup(self, namespace: str, actor_type: str, actor_id: str) -> str:
        """The name of the host that owns the actor; raises `NoHostsError` when no host
        supports (namespace, actor_type)."""
        ring = self._rings.get((namespace, actor_type)) or self.ring(namespace, actor_type)
        return ring.lookup(actor_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RingSet):
            return NotImplemented
        return (self._members, self._vnodes) == (other._members, other._vnodes)

    def __hash__(self) -> int:
        return hash((frozenset(self._members.items()), self._vnodes))

    def __repr__(self) -> str:
        return f"RingSet({len(self._members)} types, vnodes={self._vnodes})"
