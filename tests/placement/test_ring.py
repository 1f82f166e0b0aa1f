"""The placement ring: golden values, the fast path against a brute-force reference, and
the balance and minimal-movement properties (see placement/ring.py for the scheme)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import placement.ring
from placement.errors import NoHostsError, PlacementError
from placement.ring import (
    DEFAULT_VNODES,
    PROBES,
    HashRing,
    RingSet,
    probe_positions,
    stable_hash64,
    vnode_positions,
)

CIRCLE = 1 << 64
GOLDEN: dict[str, Any] = json.loads(
    Path(__file__).with_name("ring_golden.json").read_text(encoding="utf-8")
)
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    actor_types: tuple[str, ...]


def naive_owner(hosts: list[str], vnodes: int, probes: tuple[int, ...] | list[int]) -> str:
    """The rule as written in the module docstring, by brute force over every point."""
    owner: dict[int, str] = {}
    for name in sorted(set(hosts), reverse=True):  # the smaller name keeps a shared point
        for q in vnode_positions(name, vnodes):
            owner[q] = name

    def score(q: int) -> tuple[int, int, int]:
        scores = []
        for i, p in enumerate(probes):
            clockwise, counter = (q - p) % CIRCLE, (p - q) % CIRCLE
            scores.append((min(clockwise, counter), i, 0 if clockwise <= counter else 1))
        return min(scores)

    return owner[min(owner, key=score)]


names = st.text(alphabet="abcxyz019-.:", max_size=6)
actor_ids = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)  # valid UTF-8


def ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


# ---- golden values: placement and every sidecar must agree forever


def test_hashes_match_the_published_blake2b_vectors() -> None:
    # BLAKE2b-512("") begins 786a02f742015903 (RFC 7693 test suite); `b2sum -l 64` of
    # the empty input prints e4a6a0577479b2b4.
    assert probe_positions("")[0] == 0x786A02F742015903
    assert stable_hash64("") == 0xE4A6A0577479B2B4


def test_golden_hashes() -> None:
    assert (GOLDEN["vnodes"], GOLDEN["probes"]) == (DEFAULT_VNODES, PROBES)
    for data, value in GOLDEN["stable_hash64"].items():
        assert stable_hash64(data) == value, data
    for actor_id, probes in GOLDEN["probe_positions"].items():
        assert list(probe_positions(actor_id)) == probes, actor_id
    for host, positions in GOLDEN["vnode_positions"].items():
        assert vnode_positions(host, len(positions)) == positions, host


def test_golden_owners() -> None:
    ring = HashRing(GOLDEN["hosts"])
    assert len(GOLDEN["owners"]) == 20 and len(set(GOLDEN["hosts"])) == 5
    assert {actor_id: ring.lookup(actor_id) for actor_id in GOLDEN["owners"]} == GOLDEN["owners"]


def test_golden_ring_set() -> None:
    hosts = [
        Host(h["name"], h["namespace"], tuple(h["actor_types"])) for h in GOLDEN["ringset"]["hosts"]
    ]
    rings = RingSet(hosts)
    for namespace, actor_type, actor_id, owner in GOLDEN["ringset"]["lookups"]:
        assert rings.lookup(namespace, actor_type, actor_id) == owner


# ---- the fast path against the reference


@settings(SETTINGS, max_examples=60)
@given(
    hosts=st.lists(names, min_size=1, max_size=6),
    vnodes=st.integers(1, 12),
    keys=st.lists(actor_ids, min_size=1, max_size=12),
)
def test_lookup_matches_the_reference(hosts: list[str], vnodes: int, keys: list[str]) -> None:
    ring = HashRing(hosts, vnodes=vnodes)
    for key in keys:
        probes = probe_positions(key)
        assert (
            ring.lookup(key) == ring.owner_of_probes(probes) == naive_owner(hosts, vnodes, probes)
        )


@settings(SETTINGS, max_examples=80)
@given(
    hosts=st.lists(names, min_size=1, max_size=5),
    vnodes=st.integers(1, 30),
    data=st.data(),
)
def test_probes_on_cell_boundaries_match_the_reference(
    hosts: list[str], vnodes: int, data: st.DataObject
) -> None:
    """Probes at points, at the midpoints between them and one off: the ties, and the
    buckets that straddle a boundary and go through `_Straddle`."""
    ring = HashRing(hosts, vnodes=vnodes)
    points = sorted({q for h in set(hosts) for q in vnode_positions(h, vnodes)})
    k = data.draw(st.integers(0, len(points) - 1))
    a, b = points[k], points[(k + 1) % len(points)] + (CIRCLE if k + 1 == len(points) else 0)
    targets = [a, b, (a + b) >> 1, (a + b + 1) >> 1, 0, CIRCLE - 1]
    target = data.draw(st.sampled_from(targets)) + data.draw(st.integers(-2, 2))
    probes = [target % CIRCLE, *data.draw(st.lists(st.integers(0, CIRCLE - 1), max_size=3))]
    probes = data.draw(st.permutations(probes))
    assert ring.owner_of_probes(probes) == naive_owner(hosts, vnodes, probes)


@settings(SETTINGS, max_examples=80)
@given(
    hosts=st.lists(names, min_size=2, max_size=4, unique=True),
    vnodes=st.integers(1, 4),
    data=st.data(),
)
def test_unrolled_lookup_breaks_ties_like_the_reference(
    hosts: list[str], vnodes: int, data: st.DataObject
) -> None:
    """Hashed ids never tie, so feed `lookup` crafted probes: several equally far from
    points of different hosts, some on midpoints."""
    ring = HashRing(hosts, vnodes=vnodes)
    every = sorted({q for h in hosts for q in vnode_positions(h, vnodes)})
    points = data.draw(st.lists(st.sampled_from(every), min_size=2, max_size=4))
    offset = data.draw(st.sampled_from([0, 1, 2**40]))
    pool = [(q + sign * offset) % CIRCLE for q in points for sign in (1, -1)]
    pool += [(a + b) >> 1 for a, b in pairwise(every)]
    probes = tuple(data.draw(st.lists(st.sampled_from(pool), min_size=PROBES, max_size=PROBES)))
    original = placement.ring._PROBES_OF
    setattr(placement.ring, "_PROBES_OF", lambda _digest: probes)  # noqa: B010
    try:
        assert ring.lookup("ignored") == naive_owner(hosts, vnodes, probes)
    finally:
        setattr(placement.ring, "_PROBES_OF", original)  # noqa: B010


def test_a_shared_point_belongs_to_the_smaller_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """64-bit collisions do not happen by chance, so make one: whoever joins or leaves,
    the point is the smaller name's, and only that point's keys move."""
    real = placement.ring.vnode_positions
    shared = real("b", 1)[0]

    def positions(host: str, vnodes: int = DEFAULT_VNODES) -> list[int]:
        return [shared, *real(host, vnodes)[1:]] if host in ("a", "b") else real(host, vnodes)

    monkeypatch.setattr(placement.ring, "vnode_positions", positions)
    for hosts in (["a", "b"], ["b", "a"], ["b", "a", "c"], ["c", "a"]):
        assert HashRing(hosts, vnodes=5).owner_of_probes([shared]) == "a"
    assert HashRing(["b", "c"], vnodes=5).owner_of_probes([shared]) == "b"


def test_ties_go_to_the_lower_probe_then_clockwise() -> None:
    (q,) = vnode_positions("solo", 1)
    ring = HashRing(["solo", "other"], vnodes=1)
    (r,) = vnode_positions("other", 1)
    lo, hi = min(q, r), max(q, r)
    mid = (lo + hi) // 2
    owner_hi = "solo" if hi == q else "other"
    owner_lo = "other" if owner_hi == "solo" else "solo"
    if (hi - lo) % 2 == 0:  # exactly between: the clockwise point (hi) wins
        assert ring.owner_of_probes([mid]) == owner_hi
    else:
        assert ring.owner_of_probes([mid]) == owner_lo
        assert ring.owner_of_probes([mid + 1]) == owner_hi
    assert ring.owner_of_probes([lo + 5, hi - 5]) == owner_lo  # equal distances: probe 0
    assert ring.owner_of_probes([hi - 5, lo + 5]) == owner_hi


# ---- properties of the scheme


@settings(SETTINGS, max_examples=4)
@example(prefix="host-", numbers=list(range(100)), key_prefix="actor-")
@given(
    prefix=st.sampled_from(["host-", "sidecar-", "10.1.", "pod-7f9c-", ""]),
    numbers=st.lists(st.integers(0, 10**6), min_size=100, max_size=100, unique=True),
    key_prefix=st.sampled_from(["actor-", "order:", "wf/", ""]),
)
def test_balance_with_default_settings(prefix: str, numbers: list[int], key_prefix: str) -> None:
    """100 hosts, 100k keys: no host holds more than 1.15 times the mean."""
    ring = HashRing(f"{prefix}{n}" for n in numbers)
    counts = Counter(map(ring.lookup, ids(key_prefix, 100_000)))
    assert len(counts) == 100
    assert max(counts.values()) / 1000 <= 1.15


@settings(SETTINGS, max_examples=15)
@given(
    hosts=st.lists(st.integers(0, 10**6), min_size=1, max_size=40, unique=True),
    new=st.integers(10**6 + 1, 2 * 10**6),
)
def test_adding_a_host_moves_few_keys_and_only_to_it(hosts: list[int], new: int) -> None:
    before = HashRing(f"h{n}" for n in hosts)
    after = HashRing([*before.hosts, f"h{new}"])
    keys = ids("k", 20_000)
    moved = [k for k in keys if before.lookup(k) != after.lookup(k)]
    assert {after.lookup(k) for k in moved} <= {f"h{new}"}
    assert len(moved) / len(keys) <= 1.25 / (len(hosts) + 1)


@settings(SETTINGS, max_examples=15)
@given(hosts=st.lists(st.integers(0, 10**6), min_size=2, max_size=40, unique=True), data=st.data())
def test_removing_a_host_moves_only_its_keys(hosts: list[int], data: st.DataObject) -> None:
    gone = f"h{data.draw(st.sampled_from(hosts))}"
    before = HashRing(f"h{n}" for n in hosts)
    after = HashRing(h for h in before.hosts if h != gone)
    for key in ids("k", 20_000):
        was = before.lookup(key)
        assert after.lookup(key) == was or was == gone


def test_order_and_duplicates_do_not_matter() -> None:
    hosts = [f"host-{i}" for i in range(30)]
    ring = HashRing(hosts)
    shuffled = HashRing([*reversed(hosts), *hosts[:5]])
    assert ring == shuffled and hash(ring) == hash(shuffled) and ring.hosts == tuple(sorted(hosts))
    assert all(ring.lookup(k) == shuffled.lookup(k) for k in ids("order-", 2000))


def test_same_owners_in_processes_with_other_hash_seeds() -> None:
    code = (
        "import json\n"
        "from placement.ring import HashRing, stable_hash64\n"
        "ring = HashRing(f'host-{i}' for i in range(20))\n"
        "keys = [f'actor-{i}' for i in range(3000)]\n"
        "print(json.dumps([hash('salted?'), [ring.lookup(k) for k in keys],"
        " [stable_hash64(k) for k in keys[:100]]]))\n"
    )
    ring = HashRing(f"host-{i}" for i in range(20))
    keys = ids("actor-", 3000)
    expected = [[ring.lookup(k) for k in keys], [stable_hash64(k) for k in keys[:100]]]
    salts = []
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        salt, *values = json.loads(out.stdout)
        salts.append(salt)
        assert values == expected
    assert salts[0] != salts[1]  # the seeds took effect; the ring did not care


# ---- RingSet


def test_ring_set_routes_by_namespace_and_type() -> None:
    hosts = [
        Host("a", "default", ("wf", "cart")),
        Host("b", "default", ("wf",)),
        Host("c", "prod", ("wf",)),
    ]
    rings = RingSet(hosts)
    assert rings.types == {("default", "wf"), ("default", "cart"), ("prod", "wf")}
    assert rings.hosts_for("default", "wf") == {"a", "b"}
    assert {rings.lookup("default", "cart", k) for k in ids("x", 200)} == {"a"}
    assert {rings.lookup("default", "wf", k) for k in ids("x", 200)} == {"a", "b"}
    assert {rings.lookup("prod", "wf", k) for k in ids("x", 200)} == {"c"}
    assert rings.ring("default", "wf") == HashRing(["b", "a"])


@pytest.mark.parametrize(("namespace", "actor_type"), [("default", "nope"), ("other", "wf")])
def test_ring_set_without_a_host_raises(namespace: str, actor_type: str) -> None:
    rings = RingSet([Host("a", "default", ("wf",))])
    with pytest.raises(NoHostsError) as info:
        rings.lookup(namespace, actor_type, "x")
    assert isinstance(info.value, PlacementError)
    assert (info.value.namespace, info.value.actor_type) == (namespace, actor_type)
    assert rings.hosts_for(namespace, actor_type) == frozenset()
    assert RingSet([]).types == frozenset()


def test_ring_set_shares_rings_and_compares_by_membership() -> None:
    hosts = [Host("a", "ns", ("t1", "t2")), Host("b", "ns", ("t2", "t1")), Host("c", "ns", ("t3",))]
    rings = RingSet(hosts)
    assert rings.ring("ns", "t1") is rings.ring("ns", "t2")
    assert rings.ring("ns", "t1") is not rings.ring("ns", "t3")
    again = RingSet(reversed(hosts))
    assert again == rings and hash(again) == hash(rings)
    assert RingSet(hosts, vnodes=50) != rings
    assert RingSet(hosts[:2]) != rings


# ---- edges and arguments


def test_empty_and_odd_actor_ids_are_ordinary_keys() -> None:
    ring = HashRing(GOLDEN["hosts"])
    assert ring.lookup("") == GOLDEN["owners"][""]
    assert ring.lookup("\x00") in ring.hosts
    with pytest.raises(UnicodeEncodeError):
        ring.lookup("\ud800")  # a lone surrogate is not UTF-8; protobuf never sends one


def test_one_host_one_vnode_owns_everything() -> None:
    ring = HashRing(["only"], vnodes=1)
    assert {ring.lookup(k) for k in ids("", 500)} == {"only"}
    assert ring.owner_of_probes([0]) == ring.owner_of_probes([CIRCLE - 1]) == "only"


def test_more_vnodes_only_add_points() -> None:
    assert vnode_positions("h", 100)[:13] == vnode_positions("h", 13)
    assert len(set(vnode_positions("h", 1000))) == 1000


@pytest.mark.parametrize("vnodes", [0, -1, True, 2.0])
def test_bad_vnodes_are_refused(vnodes: Any) -> None:
    with pytest.raises(ValueError):
        HashRing(["a"], vnodes=vnodes)
    with pytest.raises(ValueError):
        RingSet([], vnodes=vnodes)
    with pytest.raises(ValueError):
        vnode_positions("a", vnodes)


def test_bad_hosts_and_probes_are_refused() -> None:
    with pytest.raises(ValueError):
        HashRing([])
    with pytest.raises(TypeError):
        HashRing("abc")
    ring = HashRing(["a"])
    for probes in ([], [-1], [CIRCLE]):
        with pytest.raises(ValueError):
            ring.owner_of_probes(probes)


def test_ring_module_stays_pure() -> None:
    tree = ast.parse(Path(placement.ring.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import)
        for alias in n.names
    }
    imported |= {
        (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    }
    assert not imported & {"asyncio", "grpc", "time", "os", "uuid", "random", "threading"}
