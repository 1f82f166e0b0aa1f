"""A host cut off without a word locks itself before the leader may evict it, with the
default settings: the arithmetic behind `placement.client.STREAM_KEEPALIVE`. (The
multi-host test measures it with a real black hole: tests/deploy/test_multihost.py.)"""

from __future__ import annotations

from dataclasses import fields

from placement.client import STREAM_KEEPALIVE, ClientConfig
from placement.config import PlacementConfig


def test_the_host_locks_before_its_earliest_eviction() -> None:
    options = dict(STREAM_KEEPALIVE)
    client = ClientConfig(addresses=("x:1",))
    host_timeout_s = next(f.default for f in fields(PlacementConfig) if f.name == "host_timeout_s")
    assert isinstance(host_timeout_s, float)
    # The link dies just after a ping was answered: the next ping goes out keepalive
    # time later and is given up after the keepalive timeout; the stream then ends, and
    # the host locks `disconnect_lock_after_s` later.
    latest_lock_s = (
        options["grpc.keepalive_time_ms"] / 1000
        + options["grpc.keepalive_timeout_ms"] / 1000
        + client.disconnect_lock_after_s
    )
    # The last heartbeat that got through may have left one interval before the cut.
    earliest_eviction_s = host_timeout_s - client.heartbeat_interval_s
    assert latest_lock_s + 0.5 <= earliest_eviction_s, (latest_lock_s, earliest_eviction_s)


def test_the_stream_keeps_the_shared_ping_permissions() -> None:
    options = dict(STREAM_KEEPALIVE)
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.max_pings_without_data"] == 0
    assert len(options) == len(STREAM_KEEPALIVE)  # no option given twice
