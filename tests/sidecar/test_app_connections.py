"""`AppConnections`: the stateful-history delta on a stream that announced it, and full
histories elsewhere and whenever the held prefix is not this history's prefix."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import pytest

from sidecar.api.taskhub.v1 import taskhub_pb2 as pb
from sidecar.engine.apps import AnswerKindError, AppConnections, WorkItemTooLargeError


def _event(i: int, kind: str = "taskScheduled", tag: str = "") -> pb.HistoryEvent:
    event = pb.HistoryEvent(eventId=i)
    if kind == "executionStarted":
        event.executionStarted.name = f"wf{tag}"
    else:
        event.taskScheduled.name = f"act{i}"
    return event


def _history(n: int, tag: str = "") -> list[pb.HistoryEvent]:
    return [_event(0, "executionStarted", tag), *(_event(i) for i in range(1, n))]


def _request(iid: str) -> pb.WorkflowRequest:
    """A turn's request; its history travels beside it (`run_workflow(request, past)`)."""
    request = pb.WorkflowRequest(instanceId=iid)
    request.executionId.value = f"exec-{iid}"
    request.newEvents.append(_event(99))
    return request


async def _take_one(stream: AsyncGenerator[pb.WorkItem, None], apps: AppConnections) -> pb.WorkItem:
    item = await anext(stream)
    apps.complete(item.completionToken, pb.WorkflowResponse())
    return item


async def _turns(
    stateful: bool, pasts: list[tuple[str, list[pb.HistoryEvent]]]
) -> list[pb.WorkItem]:
    apps = AppConnections()
    stream = apps.stream(stateful_history=stateful)
    sent = []
    for iid, past in pasts:
        waiter = asyncio.create_task(apps.run_workflow(_request(iid), past))
        sent.append(await _take_one(stream, apps))
        await waiter
    await stream.aclose()
    return sent


async def test_a_stateful_stream_gets_only_the_new_committed_events() -> None:
    first, second = await _turns(True, [("i", _history(3)), ("i", _history(7))])
    assert not first.workflowRequest.HasField("cachedHistory")
    assert len(first.workflowRequest.pastEvents) == 3
    assert second.workflowRequest.cachedHistory.eventCount == 3
    assert [e.eventId for e in second.workflowRequest.pastEvents] == [3, 4, 5, 6]
    assert [e.eventId for e in second.workflowRequest.newEvents] == [99]
    # Everything else of the request and the item travels unchanged.
    assert second.workflowRequest.instanceId == "i"
    assert second.workflowRequest.executionId.value == "exec-i"
    assert second.completionToken and second.completionToken != first.completionToken


async def test_a_plain_stream_always_gets_the_whole_history() -> None:
    _, second = await _turns(False, [("i", _history(3)), ("i", _history(7))])
    assert not second.workflowRequest.HasField("cachedHistory")
    assert len(second.workflowRequest.pastEvents) == 7


async def test_a_new_execution_gets_its_whole_history() -> None:
    # Continue-as-new: same instance id, a new history that is longer but not an extension.
    _, second = await _turns(True, [("i", _history(3)), ("i", _history(5, tag="gen2"))])
    assert not second.workflowRequest.HasField("cachedHistory")
    assert len(second.workflowRequest.pastEvents) == 5


async def test_a_shorter_history_gets_sent_whole() -> None:
    _, second = await _turns(True, [("i", _history(6)), ("i", _history(4))])
    assert not second.workflowRequest.HasField("cachedHistory")
    assert len(second.workflowRequest.pastEvents) == 4


async def test_instances_are_held_separately() -> None:
    items = await _turns(True, [("a", _history(2)), ("b", _history(4)), ("a", _history(5))])
    assert not items[1].workflowRequest.HasField("cachedHistory")
    assert items[2].workflowRequest.cachedHistory.eventCount == 2
    assert len(items[2].workflowRequest.pastEvents) == 3


async def test_the_history_is_added_when_sent_and_never_to_the_callers_request() -> None:
    apps = AppConnections()
    plain = apps.stream()
    request, past = _request("i"), _history(4)
    waiter = asyncio.create_task(apps.run_workflow(request, past))
    item = await _take_one(plain, apps)
    await waiter
    assert [e.eventId for e in item.workflowRequest.pastEvents] == [0, 1, 2, 3]
    assert [e.eventId for e in item.workflowRequest.newEvents] == [99]
    assert not request.pastEvents
    await plain.aclose()


async def test_a_history_given_twice_is_refused() -> None:
    request = _request("i")
    request.pastEvents.extend(_history(2))
    with pytest.raises(ValueError, match="either"):
        await AppConnections().run_workflow(request, _history(2))


async def test_a_redispatched_item_is_whole_on_the_next_stream() -> None:
    apps = AppConnections()
    one = apps.stream(stateful_history=True)
    first = asyncio.create_task(apps.run_workflow(_request("i"), _history(3)))
    await _take_one(one, apps)
    await first
    second = asyncio.create_task(apps.run_workflow(_request("i"), _history(6)))
    taken = await anext(one)
    assert taken.workflowRequest.cachedHistory.eventCount == 3
    await one.aclose()  # the app went away before answering: the item goes back
    two = apps.stream(stateful_history=True)
    again = await _take_one(two, apps)
    await second
    assert not again.workflowRequest.HasField("cachedHistory")
    assert len(again.workflowRequest.pastEvents) == 6
    await two.aclose()


class _Puller:
    """An app's side of one stream: take the next item, or see that none is offered."""

    def __init__(self, apps: AppConnections) -> None:
        self.stream = apps.stream()
        self._step: asyncio.Future[pb.WorkItem] | None = None

    async def poll(self) -> pb.WorkItem | None:
        """The next item if one is offered once pending callbacks and wake-ups ran."""
        if self._step is None:
            self._step = asyncio.ensure_future(anext(self.stream))
        for _ in range(5):
            await asyncio.sleep(0)
        if not self._step.done():
            return None
        item, self._step = self._step.result(), None
        return item

    async def next(self) -> pb.WorkItem:
        if self._step is None:
            self._step = asyncio.ensure_future(anext(self.stream))
        item = await self._step
        self._step = None
        return item

    async def close(self) -> None:
        if self._step is not None:
            self._step.cancel()  # the stream ends as when the app goes away
            await asyncio.gather(self._step, return_exceptions=True)
        await self.stream.aclose()


def _activities(apps: AppConnections, n: int) -> list[asyncio.Task[pb.ActivityResponse]]:
    return [
        asyncio.create_task(apps.run_activity(pb.ActivityRequest(name=f"a{i}"))) for i in range(n)
    ]


async def test_a_connection_holds_at_most_its_window_of_activities() -> None:
    apps = AppConnections(activity_window=3, workflow_window=2)
    app = _Puller(apps)
    calls = _activities(apps, 5)
    taken = [await app.next() for _ in range(3)]
    assert [t.activityRequest.name for t in taken] == ["a0", "a1", "a2"]
    # The window is full: no fourth activity, but a workflow turn still goes out.
    assert await app.poll() is None
    turn = asyncio.create_task(apps.run_workflow(_request("w"), _history(1)))
    got = await app.next()
    assert got.HasField("workflowRequest")
    # Answering one activity frees one slot, for exactly one more.
    apps.complete(taken[0].completionToken, pb.ActivityResponse())
    nxt = await app.next()
    assert nxt.activityRequest.name == "a3"
    assert await app.poll() is None
    for item in (taken[1], taken[2], nxt):
        apps.complete(item.completionToken, pb.ActivityResponse())
    last = await app.next()
    apps.complete(last.completionToken, pb.ActivityResponse())
    apps.complete(got.completionToken, pb.WorkflowResponse())
    await asyncio.gather(*calls, turn)
    await app.close()


async def test_an_answer_of_the_other_kind_is_refused_and_the_item_waits() -> None:
    """A turn's token answered with an activity outcome (or the other way round) would
    hand the caller a message it cannot read: refused, and the right answer still
    lands."""
    apps = AppConnections()
    app = _Puller(apps)
    (call,) = _activities(apps, 1)
    turn = asyncio.create_task(apps.run_workflow(_request("w"), _history(1)))
    first, second = await app.next(), await app.next()
    activity, workflow = (first, second) if first.HasField("activityRequest") else (second, first)
    with pytest.raises(AnswerKindError, match="names an activity, not a workflow turn"):
        apps.complete(activity.completionToken, pb.WorkflowResponse())
    with pytest.raises(AnswerKindError, match="names a workflow turn, not an activity"):
        apps.complete(workflow.completionToken, pb.ActivityResponse())
    assert not call.done() and not turn.done()
    assert apps.complete(activity.completionToken, pb.ActivityResponse(taskId=7))
    assert apps.complete(workflow.completionToken, pb.WorkflowResponse(instanceId="w"))
    assert (await call).taskId == 7 and (await turn).instanceId == "w"
    await app.close()


async def test_an_answer_to_an_earlier_sidecar_process_is_dropped() -> None:
    """An app that outlived its sidecar answers what it took from it on its next
    connection, to the sidecar's next process: there the token names nothing, though
    that process numbers its items from 1 again."""
    earlier, later = AppConnections(), AppConnections()
    old_app, new_app = _Puller(earlier), _Puller(later)
    (old_call,) = _activities(earlier, 1)
    (new_call,) = _activities(later, 1)
    old_item, new_item = await old_app.next(), await new_app.next()
    assert old_item.completionToken != new_item.completionToken
    assert not later.complete(old_item.completionToken, pb.ActivityResponse(taskId=1))
    assert not new_call.done()
    assert later.complete(new_item.completionToken, pb.ActivityResponse(taskId=2))
    assert (await new_call).taskId == 2
    old_call.cancel()
    await old_app.close()
    await new_app.close()


async def test_a_closed_connection_gives_its_window_to_another() -> None:
    apps = AppConnections(activity_window=2)
    one, two = _Puller(apps), _Puller(apps)
    calls = _activities(apps, 4)
    held = [await one.next(), await one.next()]
    other = [await two.next(), await two.next()]
    assert {i.activityRequest.name for i in held + other} == {"a0", "a1", "a2", "a3"}
    await one.close()  # the app went away: its two come back, and `two` is full
    assert await two.poll() is None
    apps.complete(other[0].completionToken, pb.ActivityResponse())
    again = await two.next()
    assert again.activityRequest.name in {i.activityRequest.name for i in held}
    for item in (other[1], again):
        apps.complete(item.completionToken, pb.ActivityResponse())
    final = await two.next()
    apps.complete(final.completionToken, pb.ActivityResponse())
    await asyncio.gather(*calls)
    await two.close()


def test_windows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="0 \\(no limit\\) or more"):
        AppConnections(activity_window=-1)


# ---- the message limit


def _big_request(iid: str, size: int) -> pb.WorkflowRequest:
    request = _request(iid)
    request.newEvents.append(pb.HistoryEvent(eventId=100))
    request.newEvents[-1].taskCompleted.result.value = "x" * size
    return request


@pytest.mark.parametrize("stateful", [False, True], ids=["plain", "stateful"])
async def test_an_item_over_the_limit_is_refused_to_its_caller_and_the_stream_goes_on(
    stateful: bool,
) -> None:
    apps = AppConnections(max_item_bytes=10_000)
    stream = apps.stream(stateful_history=stateful)
    big = asyncio.create_task(apps.run_workflow(_big_request("big", 20_000), _history(3)))
    activity = pb.ActivityRequest(name="act", input=pb.ActivityRequest().input)
    activity.input.value = "y" * 20_000
    big_activity = asyncio.create_task(apps.run_activity(activity))
    small = asyncio.create_task(apps.run_workflow(_request("small"), _history(3)))
    sent = await _take_one(stream, apps)  # the big turn is skipped: the small one comes
    assert sent.workflowRequest.instanceId == "small"
    await small
    pump = asyncio.create_task(anext(stream))  # takes the big activity, then waits
    with contextlib.suppress(WorkItemTooLargeError):
        await asyncio.wait_for(asyncio.shield(big_activity), 10)
    assert not pump.done()  # nothing was sent
    pump.cancel()
    for refused, size in ((big, 20_000), (big_activity, 20_000)):
        with pytest.raises(WorkItemTooLargeError) as err:
            await refused
        assert err.value.limit == 10_000 and err.value.size > size
        assert "over this sidecar's limit of 10000 bytes" in str(err.value)
    assert apps.dispatched == 1 and apps.refused_items == 2


async def test_a_refused_turn_leaves_no_held_prefix_behind() -> None:
    """The stream never got the refused turn's history: the next turn of that instance
    must carry it whole, not a delta against what the app does not hold."""
    apps = AppConnections(max_item_bytes=10_000)
    stream = apps.stream(stateful_history=True)
    refused = asyncio.create_task(apps.run_workflow(_big_request("i", 20_000), _history(3)))
    follow = asyncio.create_task(apps.run_workflow(_request("i"), _history(5)))
    sent = await _take_one(stream, apps)
    with pytest.raises(WorkItemTooLargeError):
        await refused
    await follow
    assert not sent.workflowRequest.HasField("cachedHistory")
    assert len(sent.workflowRequest.pastEvents) == 5
    await stream.aclose()


async def test_no_limit_sends_anything() -> None:
    apps = AppConnections()
    stream = apps.stream()
    turn = asyncio.create_task(apps.run_workflow(_big_request("big", 200_000), _history(3)))
    sent = await _take_one(stream, apps)
    await turn
    assert sent.ByteSize() > 200_000
    await stream.aclose()
