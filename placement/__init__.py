"""Placement service: which sidecars host which actor types.

- `ring`: the pure consistent-hash ring (`HashRing`, `RingSet`, `stable_hash64`) that
  every sidecar derives from the replicated membership; golden values pinned in tests.
- `membership`: the pure replicated membership state machine (`Membership`, `apply`).
- `dissemination`: the pure lock / update / unlock round machine (`Disseminator`).
- `table`: a host's view of the table (`TableView`, `Table`), refusing stale orders.
- `machine`: the Raft state machine around `membership`.
- `server`: one node (`PlacementNode`): Raft, host streams and the leader's control loop.
- `events`: the events that control loop consumes.
- `edge`: the node's gRPC service (`PlacementService`: `ReportHost`, `GetPlacementInfo`);
  with the control loop's stream closes, the only place mapping errors to status codes.
- `pending`: membership changes waiting to be proposed (`PendingChanges`), pure.
- `orders`: orders held back through a quorum gap (`HeldOrders`).
- `streams`: report validation and order encoding (full tables and deltas).
- `client`: `PlacementClient`, the sidecars' library (follows the leader, applies
  rounds, bounded lookups while locked, `lookup`, `wait_for_version`).
- `config`, `cli` (`python -m placement`), `localcluster` (real node processes).
- `errors`: `PlacementError` and its subclasses.
- `api/v1/`: generated protobuf/gRPC code for the host stream (from `proto/placement/`).
"""

from __future__ import annotations

from placement.client import ClientConfig, PlacementClient
from placement.errors import NoHostsError, PlacementError
from placement.ring import HashRing, RingSet, stable_hash64
from placement.table import Table, TableHost

__all__ = [
    "ClientConfig",
    "HashRing",
    "NoHostsError",
    "PlacementClient",
    "PlacementError",
    "RingSet",
    "Table",
    "TableHost",
    "stable_hash64",
]
