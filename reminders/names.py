"""The names both ends of the reminders API use on the wire: the gRPC service, and the
trailing metadata key in which a node that does not lead names the leader. One place,
so that the client (`client`) and the service (`edge`) cannot drift apart."""

from __future__ import annotations

__all__ = ["LEADER_METADATA_KEY", "SERVICE"]

SERVICE = "actorflow.reminders.v1.Reminders"
LEADER_METADATA_KEY = "actorflow-leader"
