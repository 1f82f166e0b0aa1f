"""Reminders service: durable timers replicated with Raft, fired at least once.

- `durations`, `schedule`: pure parsing and schedule math (`plan`, `after_fire`,
  `DueQueue`), time passed in.
- `machine`: the pure replicated table (`ReminderTable`): create / delete / progress /
  lead commands, generations, change list per command.
- `replica`: the `raftkit.StateMachine` around it (lock, change feed to asyncio).
- `firing`: the leader's firing loop (`Dispatcher`): the loop, leadership and term fencing,
  the due queue kept up to date from the change feed.
- `delivery`: `Delivery`, the dispatcher's state and base class: subscribers, in-flight
  firings, retries with backoff, progress recorded through Raft in batches.
- `firing_events`: what the loop is fed: `Clock`, `Subscriber`, the events on its queue.
- `server`: one node (`RemindersNode`): wires Raft, the firing loop and the gRPC server,
  and starts and stops them.
- `batcher`: group-committed registration (`CreateBatcher`): concurrent creates folded
  into few `create` Raft commands, each under the size limit.
- `edge`: the gRPC service (`RemindersService`): leader-only reads, the trigger stream,
  and the only place mapping errors to status codes.
- `convert`: request validation and protobuf conversion.
- `names`: the service name and leader metadata key both ends use on the wire.
- `client`: `RemindersClient` (API, follows the leader, folds concurrent creates) and
  `TriggerSubscriber` (a sidecar's trigger stream; refuses batches of an older term).
- `config`, `cli` (`python -m reminders`), `testing` (`LocalCluster` of real processes).
- `api/v1/`: generated protobuf/gRPC code for the reminders API (from `proto/reminders/`).
"""

from __future__ import annotations

from reminders.errors import InvalidReminderError, NotLeaderError, RemindersError

__all__ = ["InvalidReminderError", "NotLeaderError", "RemindersError"]
