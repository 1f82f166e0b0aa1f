"""The dispatch an activity actor receives: `fresh` travels only when asked for."""

from __future__ import annotations

import msgpack

from sidecar.engine.effects import decode_dispatch, encode_dispatch
from sidecar.workflow import DispatchActivity

D = DispatchActivity(
    instance_id="i", execution_id="e", generation=2, task_id=7, name="act", input='"x"',
    task_execution_id="te", target_app_id="other", version=None, fresh=True,
)  # fmt: skip


def test_round_trip_keeps_every_field() -> None:
    decoded, source = decode_dispatch(encode_dispatch(D, "src", fresh=True))
    assert decoded == D
    assert source == "src"


def test_fresh_only_when_the_sender_says_so() -> None:
    # A retry of a fresh dispatch is sent without it: an earlier attempt may have landed
    # on an activation that saved an outcome since.
    decoded, _ = decode_dispatch(encode_dispatch(D, "src"))
    assert not decoded.fresh


def test_a_payload_without_the_flag_is_not_fresh() -> None:
    row = msgpack.unpackb(encode_dispatch(D, "src", fresh=True))
    del row["f"]
    decoded, _ = decode_dispatch(msgpack.packb(row))
    assert not decoded.fresh
