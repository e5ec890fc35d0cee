"""A worker decides how much it writes, the supervisor how much of it it handles per event-loop turn (test
process, which is the supervisor; real workers, real rings, real control channel).

Each cap is observed from the loop's side: a `TurnProbe` sink schedules a callback (`call_soon`) when a
delivery arrives and none is pending, and that callback records how many deliveries came before it ran. A
delivery path that held the loop until the worker stopped writing would show as one huge batch; a capped
path shows as batches no larger than its cap, with the loop getting turns in between. One loop iteration
may run two drains of the same worker (its result doorbell's reader and the drain rescheduled by the
previous turn), so the drain tests allow twice the per-turn budget: without the caps the batches reach
thousands.

Then the issue's figure: while a processor on another worker floods results, output frames or control
messages, the loop lag p99 stays under 20 ms and the healthy stream gets every result (at least 99 %).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import select
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from framepool.ipc import control
from framepool.ipc.slots import OutputFrame
from framepool.pool import Result, WorkerPool
from framepool.pool.formats import input_format_of, ring_slots
from tests.support.flood import FLOODS, flood_beside_healthy
from tests.support.pool import AUDIO_10MS, audio_frame, audio_spec, settings
from tests.support.timeouts import EVENT

pytestmark = pytest.mark.process

LAG_P99_TARGET_MS = 20.0
HEALTHY_RESULTS_TARGET = 0.99


class TurnProbe:
    """A sink that measures how many deliveries arrive per loop turn (see the module docstring)."""

    def __init__(self, work_s: float = 0.0) -> None:
        self.work_s = work_s  # busy time per delivery: the supervisor handles a result slower than a worker
        # writes one (as a room's sink does: encode, rate, queue), so an uncapped drain would never find
        # the ring empty
        self.loop = asyncio.get_running_loop()
        self.batches: list[int] = []
        self.delivered = 0
        self.events: list[tuple[str, str]] = []
        self._since = 0
        self._pending = False
        self._changed = asyncio.Event()

    def _delivery(self) -> None:
        end = time.perf_counter() + self.work_s
        while time.perf_counter() < end:
            pass
        self.delivered += 1
        self._since += 1
        if not self._pending:
            self._pending = True
            self.loop.call_soon(self._turn)
        self._changed.set()

    def _turn(self) -> None:
        self.batches.append(self._since)
        self._since, self._pending = 0, False

    def on_result(self, result: Result) -> None:
        self._delivery()

    def on_output_frame(self, stream_id: str, frame: OutputFrame) -> None:
        self._delivery()

    def on_stream_event(self, stream_id: str, event: str, detail: str) -> None:
        self.events.append((event, detail))
        if event == "processor_error":  # the burst's messages; "detached" and the like are not counted
            self._delivery()
        self._changed.set()

    async def wait_for(self, count: int, what: str) -> None:
        async with asyncio.timeout(EVENT):
            while self.delivered < count:
                self._changed.clear()
                await self._changed.wait()
        assert self.delivered == count, f"{self.delivered} {what}, expected {count}"


@contextlib.contextmanager
def beside(pool: WorkerPool) -> Iterator[None]:
    """Keep this thread (the loop) off the CPU of the pool's worker meanwhile: the drain and the worker's
    writes run in parallel, as in production, so an uncapped drain would find the ring refilled every
    time (sharing a CPU they alternate, and any drain ends after one ring)."""
    cpus = os.sched_getaffinity(0)
    [worker] = pool.stats().workers
    others = cpus - {worker.cpu}
    if not others:
        yield
        return
    os.sched_setaffinity(0, others)
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)


def hold_loop_until_written(fifo: Path) -> None:
    """Block the loop (on purpose) until the worker signals the FIFO: whatever it wrote meanwhile waits."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a blocking open would wait for the writer forever
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        assert poller.poll(EVENT * 1000), "the worker never signalled the FIFO"
        assert os.read(fd, 1) == b"!"
    finally:
        os.close(fd)


async def test_control_messages_are_read_at_most_max_per_turn(shm_unchanged: None, tmp_path: Path) -> None:
    """150 valid messages wait in the control socket at once (the loop is held while the worker sends them,
    under the rate limit): the supervisor reads them MAX_PER_TURN per turn, the loop runs in between, every
    message arrives and the worker is not killed. A read loop that went on to EAGAIN reads all 150 in one
    turn."""
    fifo = tmp_path / "sent"
    os.mkfifo(fifo)
    messages = 150
    pool = WorkerPool(settings())
    await pool.start()
    try:
        sink = TurnProbe()
        burst = f'tests.support.procs:ControlBurst(messages={messages}, done_fifo="{fifo}")'
        stream = await pool.attach(audio_spec("c", burst), sink)
        assert stream.push(audio_frame(1), 1, AUDIO_10MS)
        hold_loop_until_written(fifo)
        await sink.wait_for(messages, "control messages")
        assert max(sink.batches) <= control.MAX_PER_TURN, sink.batches
        assert len(sink.batches) >= math.ceil(messages / control.MAX_PER_TURN), sink.batches
        assert pool.stats().restarts == 0
        await stream.detach()
    finally:
        await pool.aclose()


async def test_the_result_drain_yields_the_loop_after_its_budget(shm_unchanged: None) -> None:
    """A processor emits 200,000 results in one call on a realtime stream (its worker never waits: it refills
    the result ring as fast as the supervisor frees it, the rest is dropped): the supervisor drains at most
    `result_ring_slots` results per drain and lets the loop run in between."""
    budget = 16
    pool = WorkerPool(settings(result_ring_slots=budget))
    await pool.start()
    try:
        sink = TurnProbe(work_s=50e-6)
        flood = "tests.support.procs:FloodResults(per_frame=200000)"
        stream = await pool.attach(audio_spec("r", flood, realtime=True), sink)
        with beside(pool):
            assert stream.push(audio_frame(1), 1, AUDIO_10MS)
            await stream.drain()  # the worker is done with the frame: every result it wrote was delivered
        stats = await stream.detach()
        assert sink.delivered + stats.results_dropped == 200_000 and sink.delivered > 20 * budget
        assert max(sink.batches) <= 2 * budget, max(sink.batches)
    finally:
        await pool.aclose()


async def test_the_output_drain_yields_the_loop_after_one_ring(shm_unchanged: None) -> None:
    """A processor publishes 20,000 output frames in one call on an offline stream (its worker waits for
    space): the supervisor drains at most one output ring's slots per drain, and a turn's drains stop at the
    result budget; every frame arrives."""
    budget, frames = 8, 20_000
    pool = WorkerPool(settings(result_ring_slots=budget))
    await pool.start()
    try:
        sink = TurnProbe(work_s=20e-6)
        spec = audio_spec(
            "o", f"tests.support.procs:FloodOutput(per_frame={frames})", output_max_frame_bytes=960
        )
        slots = ring_slots(pool.settings, input_format_of(spec.processors))
        stream = await pool.attach(spec, sink)
        await stream.push_wait(audio_frame(1), 1, AUDIO_10MS)
        await sink.wait_for(frames, "output frames")
        # Per drain: the results' budget, then at most one ring of output frames.
        assert max(sink.batches) <= 2 * (budget + slots), (max(sink.batches), budget, slots)
        await stream.detach()
    finally:
        await pool.aclose()


@pytest.mark.parametrize("flood", [name for name in FLOODS if name != "none"])
async def test_a_flooding_processor_costs_the_loop_under_20_ms(shm_unchanged: None, flood: str) -> None:
    """The issue's target: a healthy stream on one worker, a processor flooding on the other (results, output
    frames, either while ringing the result doorbell at will, or 20,000 control messages, which gets its
    worker killed for exceeding the control rate): the supervisor's loop lag p99 stays under 20 ms and the
    healthy stream gets at least 99 % of its results."""
    pool = WorkerPool(settings(workers=2))
    await pool.start()
    try:
        report = await flood_beside_healthy(pool, flood, seconds=3.0)
        assert report["loop_lag"]["p99_ms"] < LAG_P99_TARGET_MS, report
        assert report["healthy_results_ratio"] >= HEALTHY_RESULTS_TARGET, report
        if flood == "control":
            assert report["flood_restarts"] == 1, report  # over the rate: killed and replaced, once
        else:
            assert report["flood_restarts"] == 0, report  # a flood of its own rings costs only its results
            assert report["flood_results"] + report["flood_frames"] > 10_000, report  # it did flood
    finally:
        await pool.aclose()
