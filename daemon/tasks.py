"""Owned background tasks (supervisor and dev server: anything on an asyncio loop).

STYLE rule 7: every background task has an owner that logs its failure. A `TaskSet` keeps a strong
reference to each task until it ends (asyncio keeps only weak ones, so an unowned task can vanish
mid-flight), logs an exception once with the owner's description, and cancels and awaits whatever
is left when the owner closes. Chosen over `asyncio.TaskGroup` where the owner's lifetime is not a
single `async with` block (a connection, a room session, a pool) and one task's failure must not
cancel its siblings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar, overload

K = TypeVar("K")
T = TypeVar("T")


class TaskSet:
    """The background tasks of one owner; `what` names the owner in failure logs."""

    def __init__(self, what: str, log: logging.Logger) -> None:
        self._what = what
        self._log = log
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s: task %s failed", self._what, task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Let the running tasks finish on their own (failures are logged, not raised). Cancelling the wait
        leaves the tasks running (asyncio.wait, not gather, which would cancel them)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def aclose(self) -> None:
        """Cancel what is still running and wait until it has ended."""
        while self._tasks:
            pending = list(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


@overload
async def first_of(waits: Mapping[K, Awaitable[Any]]) -> K: ...


@overload
async def first_of(waits: Mapping[K, Awaitable[Any]], within: float) -> K | None: ...


async def first_of(waits: Mapping[K, Awaitable[Any]], within: float | None = None) -> K | None:
    """The key of whichever awaitable completes first; None if `within` seconds pass first.

    Coroutines (`event.wait()`, ...) are wrapped in tasks that this function owns: the ones still pending
    are cancelled and awaited before it returns, also when the caller is cancelled, and an owned coroutine
    that raised makes this raise the same exception. Tasks and futures the caller passes stay the caller's:
    they are only watched, never cancelled here (their owner decides about them and their exceptions).
    """
    futures: dict[K, asyncio.Future[Any]] = {}
    owned: list[asyncio.Future[Any]] = []
    for key, awaitable in waits.items():
        if isinstance(awaitable, asyncio.Future):
            futures[key] = awaitable
        else:
            made: asyncio.Future[Any] = asyncio.ensure_future(awaitable)
            futures[key] = made
            owned.append(made)
    try:
        await asyncio.wait(futures.values(), timeout=within, return_when=asyncio.FIRST_COMPLETED)
        for done in owned:
            if done.done() and not done.cancelled() and done.exception() is not None:
                raise done.exception()  # type: ignore[misc]
        return next((key for key, waited in futures.items() if waited.done()), None)
    finally:
        pending = [waiter for waiter in owned if not waiter.done()]
        for waiter in pending:
            waiter.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def while_moving(future: asyncio.Future[T], within: float, moved: Callable[[], bool] | None) -> T:
    """The result of `future`; TimeoutError once `within` seconds pass and `moved()` (asked at each period's
    end; None: never) says the work behind it did not move meanwhile. The future itself is never cancelled
    here: it stays its owner's."""
    while True:
        try:
            return await asyncio.wait_for(asyncio.shield(future), within)
        except TimeoutError:
            if moved is None or not moved():
                raise
