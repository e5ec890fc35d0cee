"""Baseline supervisor of the jobs benchmark (its own process): process-per-job from a forkserver.

LiveKit Agents on Linux starts job processes from a multiprocessing forkserver, so the modules imported
before the fork (here `livekit.rtc`, numpy and the job's code) are shared copy-on-write between job
processes instead of each interpreter importing its own. This process plays LiveKit Agents' worker: it
keeps idle job processes ready (`prepare`), hands each job to one of them over a pipe (`run`), and each
job process then runs `_jobs_baseline.LevelJob` with its own room connection. Importing `livekit.rtc`
does not load the SDK's native library (that happens at the first connection, in the job process), so
forking after the import is safe.

Requests: prepare {n} -> {}; run {url, token, topic} -> {pid}. When stdin closes, every job process is
told to end (its pipe closes) and is killed if it has not after a grace period.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import sys
from multiprocessing.process import BaseProcess
from typing import Any

from _jobs_child import serve_requests

PRELOAD = ["livekit.rtc", "numpy", "_jobs_baseline"]


def job_main(conn: multiprocessing.connection.Connection) -> None:
    """A job process: wait for one job, run it until the supervisor closes the pipe."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        request = conn.recv()
    except EOFError:
        return  # never given a job: the benchmark is over
    asyncio.run(_run_job(conn, request))


async def _run_job(conn: multiprocessing.connection.Connection, request: dict[str, Any]) -> None:
    from _jobs_baseline import LevelJob

    job = LevelJob()
    try:
        await job.run(request)
        conn.send("connected")
        try:
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        except EOFError:
            pass  # the supervisor closed the pipe: the job ends
    finally:
        await job.aclose()


class JobProcesses:
    """Idle and busy job processes, started from one forkserver."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        self.idle: list[tuple[BaseProcess, multiprocessing.connection.Connection]] = []
        self.busy: list[tuple[BaseProcess, multiprocessing.connection.Connection]] = []

    async def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        while len(self.idle) < int(request["n"]):
            parent, child = self.context.Pipe()
            process = self.context.Process(target=job_main, args=(child,), daemon=True)
            await asyncio.get_running_loop().run_in_executor(None, process.start)
            child.close()
            self.idle.append((process, parent))
        return {}

    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self.idle:
            raise RuntimeError("no idle job process")
        process, conn = self.idle.pop()
        self.busy.append((process, conn))
        conn.send({key: request[key] for key in ("url", "token", "topic")})
        answer = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        if answer != "connected":
            raise RuntimeError(f"job process answered {answer!r}")
        return {"pid": process.pid}

    async def aclose(self) -> None:
        processes = self.idle + self.busy
        for _, conn in processes:
            conn.close()
        loop = asyncio.get_running_loop()
        for process, _ in processes:
            await loop.run_in_executor(None, process.join, 10)
            if process.is_alive():
                process.kill()
                await loop.run_in_executor(None, process.join, 5)


async def main() -> None:
    jobs = JobProcesses()
    try:
        await serve_requests({"prepare": jobs.prepare, "run": jobs.run})
    finally:
        await jobs.aclose()


if __name__ == "__main__":
    asyncio.run(main())
