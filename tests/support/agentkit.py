"""Helpers for the agent server's integration tests: a running AgentServer against the loopback dev server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from livekit import api
from livekit.protocol import agent as agent_pb

from framepool.agent.server import AgentServer
from framepool.devserver.server import DevServer
from framepool.settings import Settings
from tests.support.devserver import API_KEY, API_SECRET
from tests.support.timeouts import EVENT


def agent_settings(devserver: DevServer, **overrides: Any) -> Settings:
    """Small, fast settings: one worker, short status interval, few retries."""
    values: dict[str, Any] = {
        "livekit_url": devserver.url,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "workers": 1,
        "status_interval": 0.5,
        "max_retry": 3,
        "shutdown_timeout": 5.0,
        "assignment_timeout": 5.0,
        "drain_timeout": 10.0,
        "http_port": 0,  # concurrent daemons must not compete for the default port
    }
    values.update(overrides)
    return Settings(**values)


def quiet_load(server: AgentServer) -> float:
    """The dev server runs in the test process, so this process's CPU is not the daemon's load: report
    none."""
    del server
    return 0.0


@asynccontextmanager
async def serving(server: AgentServer) -> AsyncIterator[AgentServer]:
    """Run `server` until the block ends; every agent registered on entry."""
    task = asyncio.create_task(server.run())
    registered = asyncio.create_task(server.registered.wait())
    done, _ = await asyncio.wait([task, registered], timeout=EVENT, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    assert registered in done, "agents did not register"
    try:
        yield server
    finally:
        server.stop()
        await asyncio.wait_for(task, EVENT)


async def job_states(lkapi: api.LiveKitAPI, room: str) -> list[agent_pb.JobState]:
    return [
        job.state
        for dispatch in await lkapi.agent_dispatch.list_dispatch(room)
        for job in dispatch.state.jobs
    ]


class Signal:
    """An awaitable value set once by an entrypoint or callback."""

    def __init__(self) -> None:
        self._future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def set(self, value: Any = None) -> None:
        if not self._future.done():
            self._future.set_result(value)

    async def wait(self, limit: float = EVENT) -> Any:
        return await asyncio.wait_for(asyncio.shield(self._future), limit)

    def is_set(self) -> bool:
        return self._future.done()


class LogWatch(logging.Handler):
    """Futures resolved by log records of an in-process logger (the dev server's view of the workers).

    The dev server keeps no event for a worker's status change, but it logs each one: awaiting the record
    is waiting on the change itself, not polling its state.
    """

    def __init__(self, logger: str) -> None:
        super().__init__(logging.DEBUG)
        self._logger = logging.getLogger(logger)
        self._loop = asyncio.get_running_loop()
        self._waiters: list[tuple[str, asyncio.Future[str]]] = []
        self.messages: list[str] = []

    def __enter__(self) -> LogWatch:
        self._level = self._logger.level
        self._logger.setLevel(logging.DEBUG)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self._loop.call_soon_threadsafe(self._offer, message)

    def _offer(self, message: str) -> None:
        self.messages.append(message)
        for fragment, future in self._waiters:
            if fragment in message and not future.done():
                future.set_result(message)

    async def wait(self, fragment: str, limit: float = EVENT) -> str:
        """The first record containing `fragment`, logged before or after this call."""
        for message in self.messages:
            if fragment in message:
                return message
        future: asyncio.Future[str] = self._loop.create_future()
        self._waiters.append((fragment, future))
        return await asyncio.wait_for(future, limit)
