"""A room's result outbox and a stream's result rate: bounded by the supervisor, whatever a worker writes."""

import asyncio

from framepool.agent.outbox import ResultOutbox
from framepool.ratelimit import TokenBucket
from tests.support.timeouts import EVENT


async def test_a_full_outbox_drops_its_oldest_and_counts_it() -> None:
    outbox: ResultOutbox[int] = ResultOutbox(3)
    for item in range(10):
        outbox.put(item)  # never blocks, never raises
    assert len(outbox) == 3 and outbox.dropped == 7
    taken = [await outbox.get() for _ in range(3)]
    assert taken == [7, 8, 9]  # the newest survive
    for _ in taken:
        outbox.done()
    await asyncio.wait_for(outbox.join(), EVENT)  # dropped items do not keep join waiting


async def test_join_waits_for_the_items_taken_to_be_done() -> None:
    outbox: ResultOutbox[str] = ResultOutbox(8)
    outbox.put("a")
    joined = asyncio.create_task(outbox.join())
    assert await outbox.get() == "a"
    await asyncio.sleep(0)
    assert not joined.done()
    outbox.done()
    await asyncio.wait_for(joined, EVENT)


async def test_get_waits_for_a_put() -> None:
    outbox: ResultOutbox[int] = ResultOutbox(2)
    getting = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    outbox.put(5)
    assert await asyncio.wait_for(getting, EVENT) == 5


def test_the_rate_allows_a_burst_then_the_rate_and_counts_the_rest() -> None:
    now = [0.0]
    rate = TokenBucket(10, clock=lambda: now[0])
    assert sum(rate.allow() for _ in range(100)) == 20  # a burst of twice the rate
    assert rate.dropped == 80
    now[0] += 1.0
    assert sum(rate.allow() for _ in range(100)) == 10  # then the rate, per second
    now[0] += 100.0
    assert sum(rate.allow() for _ in range(100)) == 20  # idle time refills only up to the burst
