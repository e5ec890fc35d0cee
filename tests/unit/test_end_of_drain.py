"""The worker runtime's end-of-drain hook (framepool.worker.drain) on hosted streams without a worker process:
one call per batching class per pass however many streams took part, a call before a stream is drained or
detached, and a raising hook counted on its class's streams up to the failure limit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import msgspec
import numpy as np
import pytest

from framepool.ipc import control
from framepool.ipc.activity import ActivityPage
from framepool.ipc.control import CallBudget
from framepool.processors.api import AudioFrame
from framepool.processors.registry import parse_spec, resolve
from framepool.worker.context import StreamContext
from framepool.worker.drain import EndOfDrain
from framepool.worker.hosting import CallWatch, HostedProcessor, HostedStream
from tests.support.platform_procs import BatchCount, BatchFail

COUNT = "tests.support.platform_procs:BatchCount"
FAIL = "tests.support.platform_procs:BatchFail"
NOOP = "tests.support.procs:Noop"
FAILURE_LIMIT = 3


class Recorder:
    """Stands in for the result writer and the control channel: keeps what a stream writes and sends."""

    realtime = True

    def __init__(self) -> None:
        self.results: list[tuple[int, str, Any]] = []  # stream index, topic, payload
        self.events: list[control.StreamEvent] = []

    def emit(self, stream: HostedStream, processor: int, seq: int, topic: str, payload: Any) -> bool:
        self.results.append((stream.index, topic, msgspec.to_builtins(payload)))
        return True

    def send(self, message: control.Message) -> None:
        assert isinstance(message, control.StreamEvent)
        self.events.append(message)


@pytest.fixture
def activity() -> Iterator[ActivityPage]:
    """The supervisor's side of the activity page (read-only)."""
    page = ActivityPage.create()
    try:
        yield page
    finally:
        page.close()


@pytest.fixture
def watch(activity: ActivityPage) -> Iterator[CallWatch]:
    page = ActivityPage.attach(os.dup(activity.fd))  # the worker's side
    try:
        yield CallWatch(page, CallBudget())
    finally:
        page.close()


@pytest.fixture(autouse=True)
def fresh_class_state() -> None:
    BatchCount.queued, BatchCount.calls = [], 0


def hosted(
    index: int, specs: list[str], recorder: Recorder, watch: CallWatch, drain: EndOfDrain
) -> HostedStream:
    message = control.AttachStream(
        index=index, key=index, stream_id=f"s{index}", kind="audio",
        processors=[parse_spec(s) for s in specs], realtime=True, labels={}, has_output=False,
        has_space_bell=False, gap=False,
    )  # fmt: skip
    stream = HostedStream(message, recorder, recorder, FAILURE_LIMIT, watch, drain)  # type: ignore[arg-type]
    for number, spec in enumerate(message.processors):
        stream.processors.append(HostedProcessor(resolve(spec), StreamContext(stream, number, spec.name)))
    return stream


def process(stream: HostedStream, drain: EndOfDrain, seq: int) -> None:
    """What `_process_frame` does for each processor: call it, note the batching ones."""

    frame = AudioFrame(np.zeros((480, 1), np.int16), 48000, 1, seq * 10_000, seq, False)
    for number, processor in enumerate(stream.processors):
        assert processor.instance is not None
        processor.instance.process(frame, processor.context)
        if processor.batches:
            drain.processed(stream, number, processor)


def batches(recorder: Recorder) -> list[dict[str, Any]]:
    return [payload for _, topic, payload in recorder.results if topic == "batch"]


def test_one_call_per_class_per_pass_however_many_streams(watch: CallWatch) -> None:
    recorder = Recorder()
    streams: dict[int, HostedStream] = {}
    drain = EndOfDrain(watch, lambda: streams.values())
    for index in range(1, 33):
        streams[index] = hosted(index, [COUNT, NOOP], recorder, watch, drain)
    for seq in (1, 2):  # two frames per stream in this pass
        for stream in streams.values():
            process(stream, drain, seq)
    drain.end_pass()
    assert BatchCount.calls == 1
    calls = batches(recorder)
    assert len(calls) == 32  # one result per stream of the batch, all from the one call
    assert {(c["call"], c["frames"], c["streams"]) for c in calls} == {(1, 64, 32)}
    assert all(c["seqs"] == [1, 2] for c in calls)
    drain.end_pass()  # a pass in which nothing was processed calls nothing
    assert BatchCount.calls == 1
    # The call's time is shared among the instances it served.
    assert all(stream.processors[0].busy > 0 for stream in streams.values())
    assert all(stream.processors[1].busy == 0 for stream in streams.values())


def test_processors_that_do_not_batch_are_never_noted(watch: CallWatch) -> None:
    recorder = Recorder()
    drain = EndOfDrain(watch, lambda: [])
    stream = hosted(1, [NOOP], recorder, watch, drain)
    assert not stream.processors[0].batches
    process(stream, drain, 1)
    drain.before_drain(stream)
    drain.end_pass()
    assert recorder.results == []


def test_before_a_drain_or_detach_the_class_is_called_with_what_other_streams_queued(
    watch: CallWatch,
) -> None:
    recorder = Recorder()
    streams: dict[int, HostedStream] = {}
    drain = EndOfDrain(watch, lambda: streams.values())
    streams = {index: hosted(index, [COUNT], recorder, watch, drain) for index in (1, 2)}
    process(streams[1], drain, 1)
    process(streams[2], drain, 1)
    leaving = streams.pop(2)  # as the runtime's detach: out of the worker's streams, then drained
    drain.before_drain(leaving)
    leaving.finish()  # close() after end_of_drain: nothing of its input is still queued
    assert BatchCount.calls == 1
    assert [(index, topic) for index, topic, _ in recorder.results] == [
        (1, "batch"),
        (2, "batch"),
        (2, "closed"),
    ]
    assert recorder.results[-1][2] == {"pending": 0}
    drain.end_pass()  # stream 1's frame went with that call
    assert BatchCount.calls == 1
    drain.before_drain(streams[1])  # called before a drain even when nothing is queued
    assert BatchCount.calls == 2


def test_a_raising_hook_is_counted_on_every_stream_of_its_class_up_to_the_limit(watch: CallWatch) -> None:
    recorder = Recorder()
    streams: dict[int, HostedStream] = {}
    drain = EndOfDrain(watch, lambda: streams.values())
    streams = {index: hosted(index, [FAIL, COUNT], recorder, watch, drain) for index in (1, 2, 3)}
    for seq in range(1, FAILURE_LIMIT + 2):
        process(streams[1], drain, seq)  # only stream 1 processes: all three host the class
        drain.end_pass()
    errors = [(e.index, e.event, e.processor) for e in recorder.events]
    for index in (1, 2, 3):
        assert errors.count((index, "processor_error", "tests.support.platform_procs:BatchFail")) == 1
        assert errors.count((index, "processor_disabled", "tests.support.platform_procs:BatchFail")) == 1
        assert streams[index].errors == FAILURE_LIMIT
        assert streams[index].processors[0].disabled and not streams[index].processors[1].disabled
    assert "end_of_drain() raised RuntimeError: batch failed" in recorder.events[0].detail
    # The other batching class of the same streams went on being called once per pass.
    assert BatchCount.calls == FAILURE_LIMIT + 1
    # Disabled, the failing processor is no longer run, noted or called.
    BatchFail.failing = 1_000_000
    process(streams[1], drain, 99)
    drain.end_pass()
    assert streams[1].errors == FAILURE_LIMIT


def test_a_hook_that_recovers_resets_the_consecutive_count(watch: CallWatch) -> None:
    recorder = Recorder()
    streams: dict[int, HostedStream] = {}
    drain = EndOfDrain(watch, lambda: streams.values())
    streams = {1: hosted(1, ["tests.support.platform_procs:BatchFail(calls=2)"], recorder, watch, drain)}
    for seq in range(1, 8):  # fails twice, then succeeds: never FAILURE_LIMIT in a row
        process(streams[1], drain, seq)
        drain.end_pass()
    assert streams[1].errors == 2 and not streams[1].processors[0].disabled
    assert [e.event for e in recorder.events] == ["processor_error"]


def test_the_call_is_recorded_in_the_activity_page_under_the_first_instance(
    watch: CallWatch, activity: ActivityPage
) -> None:
    seen: list[Any] = []

    class Spy(BatchCount):
        @classmethod
        def end_of_drain(cls) -> None:
            seen.append(activity.read())

    recorder = Recorder()
    drain = EndOfDrain(watch, lambda: [])
    streams = [hosted(index, [COUNT], recorder, watch, drain) for index in (5, 6)]
    for stream in reversed(streams):
        stream.processors[0].instance.__class__ = Spy
        process(stream, drain, 1)
    drain.end_pass()
    assert len(seen) == 1 and seen[0] is not None
    assert (seen[0].stream, seen[0].processor) == (6, 0)  # the first noted in the pass
    assert activity.read() is None  # left when the call returned
