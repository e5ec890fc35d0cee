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
from collections.abc import Awaitable, Coroutine
from typing import Any


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
        """Let the running tasks finish on their own (failures are logged, not raised)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel what is still running and wait until it has ended."""
        while self._tasks:
            pending = list(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


async def first_completed(*awaitables: Awaitable[Any], within: float | None = None) -> tuple[bool, ...]:
    """Wait until the first of `awaitables` finishes (or `within` seconds pass); which ones are done, in
    order.

    Coroutines (`event.wait()`, ...) are wrapped in tasks that this function owns: the ones still pending
    are cancelled and awaited before it returns, also when the caller is cancelled. Tasks and futures the
    caller passes stay the caller's: they are never cancelled here, only watched. An owned coroutine that
    raised makes this raise the same exception (a caller's task keeps its exception for its owner).
    """
    owned: list[asyncio.Future[Any]] = []
    futures: list[asyncio.Future[Any]] = []
    for awaitable in awaitables:
        if isinstance(awaitable, asyncio.Future):
            futures.append(awaitable)
        else:
            future: asyncio.Future[Any] = asyncio.ensure_future(awaitable)
            owned.append(future)
            futures.append(future)
    try:
        await asyncio.wait(futures, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        for future in owned:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        return tuple(future.done() for future in futures)
    finally:
        pending = [future for future in owned if not future.done()]
        for future in pending:
            future.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
