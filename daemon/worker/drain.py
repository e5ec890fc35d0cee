"""The end-of-drain hook: one call per processor class that batches across streams (worker process).

`Processor.end_of_drain()` is a classmethod: a processor that runs one model call for many streams (a VAD)
queues its input in `process` and makes the call there. The worker calls it
- once after each pass over the input rings, for every class whose instances processed a frame in that
  pass (once per class, however many of its streams took part), and
- before a stream is drained (DrainStream) or detached (DetachStream, Shutdown), for every class of that
  stream's running processors, after the stream's last frames were processed and before any `close()`:
  so an offline run's results, and a live stream's last ones, are complete.
Classes that do not override `end_of_drain` are never noted nor called.

A call is one processor call as far as the supervisor can tell: timed against a budget and recorded in the
activity page (`CallWatch`), so a call that hangs is cut off and a worker that dies in it is blamed on that
processor. The activity page names one stream and processor per call; the call is recorded under the
*first* instance of the class noted in the pass (or, before a drain or detach, the first noted, else the
stream being drained), with that stream's budget. Its time is shared equally among the instances noted,
in their busy seconds. An exception is a failure of the class: it is counted on every running instance of
that class in the worker (each stream gets `processor_error` at the first), and after
`processor_failure_limit` consecutive failing calls the instances are disabled (`processor_disabled`), as
for `process`; the worker never dies of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from framepool.processors.api import Processor

if TYPE_CHECKING:
    from framepool.worker.hosting import CallWatch, HostedProcessor, HostedStream

ProcessorClass = type[Processor[Any, Any]]
Instance = tuple["HostedStream", int, "HostedProcessor"]  # stream, processor number, hosted processor


class EndOfDrain:
    """The classes whose instances processed a frame since their last `end_of_drain`, and the calls."""

    def __init__(self, watch: CallWatch, streams: Callable[[], Iterable[HostedStream]]) -> None:
        self.watch = watch
        self._streams = streams  # the worker's hosted streams, for a failure counted on all of them
        self._noted: dict[ProcessorClass, dict[int, Instance]] = {}  # by id of the hosted processor

    def processed(self, stream: HostedStream, number: int, hosted: HostedProcessor) -> None:
        """`hosted` (a batching processor, number `number` of `stream`) processed a frame."""
        assert hosted.instance is not None  # it just processed a frame
        cls = type(hosted.instance)
        noted = self._noted.get(cls)
        if noted is None:
            noted = self._noted[cls] = {}
        noted[id(hosted)] = (stream, number, hosted)

    def end_pass(self) -> None:
        """After a pass over the input rings: one call per class noted in it."""
        while self._noted:
            cls = next(iter(self._noted))
            self._call(cls, list(self._noted.pop(cls).values()))

    def before_drain(self, stream: HostedStream) -> None:
        """Before `stream` is drained or detached: one call per batching class among its processors."""
        classes: dict[ProcessorClass, dict[int, Instance]] = {}
        for number, hosted in enumerate(stream.processors):
            if hosted.batches and not hosted.disabled and hosted.instance is not None:
                cls = type(hosted.instance)
                noted = classes.setdefault(cls, self._noted.pop(cls, {}))
                noted.setdefault(id(hosted), (stream, number, hosted))
        for cls, noted in classes.items():
            self._call(cls, list(noted.values()))

    def _call(self, cls: ProcessorClass, involved: list[Instance]) -> None:
        stream, number, blamed = involved[0]
        budget_s = self.watch.budget_s(stream.frame_s)
        started = time.perf_counter()
        self.watch.enter(stream.index, number, time.monotonic(), budget_s)
        try:
            cls.end_of_drain()
        except Exception as exc:  # a processor may raise anything: its streams count it, the worker lives
            self._failed(cls, exc, [stream for stream, _, _ in involved])
        else:
            for _, _, hosted in involved:
                hosted.drain_failures = 0
        finally:
            self.watch.leave(stream.index, number, blamed)
        share = (time.perf_counter() - started) / len(involved)
        for _, _, hosted in involved:
            hosted.busy += share

    def _failed(self, cls: ProcessorClass, exc: Exception, involved: list[HostedStream]) -> None:
        """Count the failure on every running instance of `cls` in the worker (a stream being drained or
        detached is no longer among the worker's streams: it is among those involved)."""
        streams = {id(stream): stream for stream in (*involved, *self._streams())}
        for stream in streams.values():
            for hosted in stream.processors:
                if type(hosted.instance) is cls and not hosted.disabled:
                    hosted.drain_failures += 1
                    stream.failed(hosted, exc, "end_of_drain", hosted.drain_failures)
