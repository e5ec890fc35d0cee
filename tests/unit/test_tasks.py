"""TaskSet: strong references, failures logged once with the owner's name, close cancels stragglers."""

import asyncio
import gc
import logging

import pytest

from framepool.tasks import TaskSet, first_of
from tests.support.timeouts import EVENT


async def test_failure_is_logged_with_the_owner(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet("room lobby", logging.getLogger("test.tasks"))

    async def fail() -> None:
        raise ValueError("boom")

    tasks.spawn(fail(), name="publisher")
    await tasks.wait()
    [record] = [r for r in caplog.records if r.name == "test.tasks"]
    assert record.getMessage() == "room lobby: task publisher failed"
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert len(tasks) == 0


async def test_tasks_survive_garbage_collection_and_close_cancels_them() -> None:
    tasks = TaskSet("owner", logging.getLogger("test.tasks"))
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    tasks.spawn(forever())
    gc.collect()
    await asyncio.wait_for(started.wait(), EVENT)
    assert len(tasks) == 1
    await tasks.aclose()
    assert cancelled.is_set() and len(tasks) == 0


async def test_close_also_ends_tasks_spawned_while_closing() -> None:
    tasks = TaskSet("owner", logging.getLogger("test.tasks"))
    late = asyncio.Event()

    async def spawns_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            tasks.spawn(asyncio.Event().wait())
            late.set()

    tasks.spawn(spawns_on_cancel())
    await asyncio.sleep(0)
    await tasks.aclose()
    assert late.is_set() and len(tasks) == 0


async def test_first_of_says_which_and_cancels_only_its_own_waiters() -> None:
    stop, never = asyncio.Event(), asyncio.Event()
    caller_task = asyncio.create_task(never.wait())
    asyncio.get_running_loop().call_soon(stop.set)
    assert await first_of({"task": caller_task, "stop": stop.wait()}) == "stop"
    assert not caller_task.done()  # the caller's task is left alone
    assert await first_of({"task": caller_task}, within=0.01) is None
    caller_task.cancel()
    await asyncio.gather(caller_task, return_exceptions=True)


async def test_first_of_cancelled_leaves_no_task_behind() -> None:
    never = asyncio.Event()
    before = asyncio.all_tasks()
    outer = asyncio.create_task(first_of({1: never.wait(), 2: never.wait()}))
    await asyncio.sleep(0)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert asyncio.all_tasks() == before


async def test_first_of_raises_what_its_own_coroutine_raised() -> None:
    never = asyncio.Event()

    async def fail() -> None:
        raise ValueError("receive loop broke")

    with pytest.raises(ValueError, match="receive loop broke"):
        await first_of({"receive": fail(), "left": never.wait()})
