"""The child side of the jobs benchmark's JSON-lines protocol (runs in each helper process).

A helper reads requests from stdin (`{"op": ..., "id": n, ...}`), answers each with one line carrying the
same id, and may print unsolicited event lines (`{"event": ...}`). When stdin closes (the harness died or
is done) the helper ends: no helper outlives its harness.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def serve_requests(handlers: dict[str, Handler]) -> None:
    """Answer requests until stdin closes; each request runs as its own task, so a slow one blocks none."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()

    async def answer(request: dict[str, Any]) -> None:
        handler = handlers.get(request.get("op", ""))
        try:
            if handler is None:
                raise ValueError(f"unknown op {request.get('op')!r}")
            reply = await handler(request)
        except Exception as exc:  # the harness shows the error; this helper keeps serving
            traceback.print_exc()
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        emit({**reply, "id": request.get("id", 0)})

    async for line in reader:
        if not line.strip():
            continue
        task = asyncio.create_task(answer(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
