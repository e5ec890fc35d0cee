"""The worker side of LiveKit's agent protocol, one connection per registered agent (supervisor process).

A `AgentConnection` holds the `<url>/agent` websocket of one agent: it registers (job type, agent name,
permissions, version), answers AvailabilityRequest through its `JobHost`, waits for the JobAssignment of
every job it accepted (`assignment_timeout`), forwards JobTermination, reports the daemon's load with
UpdateWorkerStatus every `status_interval` and at once when the status changes, keeps the connection
alive with WorkerPing, and relays each job's UpdateJobStatus.

When the connection drops it reconnects with a capped exponential backoff and, once registered again,
reports the jobs it still runs with MigrateJobRequest so the server keeps them assigned here. Job status
updates made while disconnected are kept and sent after re-registering rather than lost. After
`max_retry` consecutive failed attempts, or at once when the server refuses the credentials (retrying
cannot fix a bad key), `run` raises ServerUnavailableError with one line saying why.

Why not livekit-agents' Worker: it allows one agent per process and runs each job in its own process
with its own WebRTC stack, which is exactly what framepool exists to avoid. The wire format is the
protobuf of `livekit.protocol.agent`; nothing here is hand-encoded.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

import aiohttp
from google.protobuf.message import DecodeError
from livekit import api
from livekit.protocol import agent as agent_pb

from framepool.agent.registration import PING_INTERVAL, ConnectionOptions, DaemonStatus, JobHost, Registration
from framepool.errors import ServerUnavailableError
from framepool.logs import log_context
from framepool.tasks import TaskSet, first_of

log = logging.getLogger("framepool.agent.connection")

REGISTER_TIMEOUT = 10.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
# Three missed pongs in a row: the TCP connection may look open while the server is gone.
PONG_TIMEOUT = 3 * PING_INTERVAL
# The websocket close handshake at the end of a connection (aiohttp's ws_close timeout).
WS_CLOSE_TIMEOUT = 2.0


FINAL_STATUSES = frozenset({agent_pb.JS_SUCCESS, agent_pb.JS_FAILED, agent_pb.JS_CANCELLED})


class _Rejected(Exception):
    """The server refused the credentials or the registration: not worth retrying."""


class AgentConnection:
    """One agent's registration with LiveKit; `run` until `stop`."""

    def __init__(self, registration: Registration, options: ConnectionOptions, host: JobHost) -> None:
        self.registration = registration
        self.options = options
        self.host = host
        self.worker_id = ""
        self.registered = asyncio.Event()
        self.status_changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending_assignments: dict[str, asyncio.Future[agent_pb.JobAssignment]] = {}
        self._outbox: list[agent_pb.WorkerMessage] = []  # job status updates made while disconnected
        self._assigned: dict[str, agent_pb.Job] = {}  # jobs assigned here whose final status is not yet sent
        self._tasks = TaskSet(f"agent {self.label}", log)
        self._last_pong = 0.0
        self._pong_waiters: list[asyncio.Future[int]] = []
        self._status_seq = 0
        self.connections = 0  # successful registrations, for tests and logs
        self.failure = (
            ""  # why `run` gave up (retries exhausted, credentials refused): the daemon is not live
        )
        self.last_status: DaemonStatus | None = None  # the UpdateWorkerStatus last sent
        self._registration = asyncio.Condition()

    @property
    def label(self) -> str:
        kind = agent_pb.JobType.Name(self.registration.job_type)
        return f"{self.registration.agent_name or '(automatic)'}/{kind}"

    @property
    def state(self) -> str:
        """connecting, registered, reconnecting, closed (stopped) or failed (gave up), for status reports."""
        if self.failure:
            return "failed"
        if self.registered.is_set():
            return "registered"
        if self._stopping.is_set():
            return "closed"
        return "reconnecting" if self.connections else "connecting"

    # -- connection loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Stay registered until `stop`; ServerUnavailableError after max_retry failures or a refusal."""
        failures = 0
        async with aiohttp.ClientSession() as http:
            while not self._stopping.is_set():
                registrations = self.connections
                try:
                    await self._connect_and_serve(http)
                    failures = 0
                except _Rejected as exc:
                    self.failure = f"LiveKit at {self.options.url} refused agent {self.label}: {exc}"
                    raise ServerUnavailableError(self.failure) from None
                except (TimeoutError, aiohttp.ClientError, OSError, ConnectionError) as exc:
                    # A connection that registered and later dropped starts a new streak: max_retry counts
                    # consecutive failures, not every drop over the daemon's life.
                    failures = 1 if self.connections > registrations else failures + 1
                    reason = _describe(exc)
                    if failures >= self.options.max_retry:
                        self.failure = (
                            f"cannot reach LiveKit at {self.options.url} after {failures} attempts: {reason}"
                        )
                        raise ServerUnavailableError(self.failure) from None
                    delay = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
                    self._log_failure(failures, reason, delay)
                    await self._sleep_unless_stopping(delay)
        self.registered.clear()

    def _log_failure(self, failures: int, reason: str, delay: float) -> None:
        """The first failure of a streak is one WARNING line saying what failed; the retries after it are
        INFO, so a wrong URL is said once at once, not found out after minutes of identical lines."""
        if failures == 1:
            log.warning(
                "agent %s: %s LiveKit at %s: %s; retrying, up to %d more attempt(s)",
                self.label,
                "lost the connection to" if self.connections else "cannot connect to",
                self.options.url,
                reason,
                self.options.max_retry - 1,
                extra={"url": self.options.url, "cause": reason},
            )
            return
        log.info(
            "agent %s: connection failed (%s); retry %d/%d in %.1f s",
            self.label,
            reason,
            failures,
            self.options.max_retry,
            delay,
        )

    async def _sleep_unless_stopping(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            pass

    async def _connect_and_serve(self, http: aiohttp.ClientSession) -> None:
        url = self.options.url.rstrip("/") + "/agent"
        token = (
            api.AccessToken(self.options.api_key, self.options.api_secret)
            .with_grants(api.VideoGrants(agent=True))
            .to_jwt()
        )
        try:
            ws = await http.ws_connect(
                url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientWSTimeout(ws_close=WS_CLOSE_TIMEOUT),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise _Rejected(f"HTTP {exc.status} (check LIVEKIT_API_KEY / LIVEKIT_API_SECRET)") from None
            raise
        self._ws = ws
        try:
            await self._register(ws)
            await self._serve(ws)
        finally:
            self._ws = None
            self.registered.clear()
            await ws.close()

    async def _register(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reg = self.registration
        await self._send_now(
            ws,
            agent_pb.WorkerMessage(
                register=agent_pb.RegisterWorkerRequest(
                    type=reg.job_type,
                    agent_name=reg.agent_name,
                    version=reg.version,
                    namespace=reg.namespace,
                    allowed_permissions=reg.permissions,
                    ping_interval=int(self.options.keepalive_interval),
                )
            ),
        )
        message = await asyncio.wait_for(self._registration_response(ws), REGISTER_TIMEOUT)
        self.worker_id = message.register.worker_id
        self.connections += 1
        log.info(
            "agent %s: registered as worker %s (server %s)",
            self.label,
            self.worker_id,
            message.register.server_info.version or "unknown version",
        )
        if self.connections > 1:
            await self._report_jobs_held(ws)
        while self._outbox:  # one at a time: a connection lost mid-way keeps the rest queued, in order
            await self._send_now(ws, self._outbox[0])
            self._forget_if_final(self._outbox.pop(0).update_job)
        self.registered.set()
        async with self._registration:
            self._registration.notify_all()

    async def _report_jobs_held(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """MigrateJobRequest for the jobs still running here and those whose final status is still queued.

        The server attributes status updates to the worker holding the job, and a reconnect makes this a
        new worker: without the migration, the queued final status of a job that ended while disconnected
        would be dropped as coming from a stranger.
        """
        held = {job.id: job for job in self.host.live_jobs(self)}
        for queued in self._outbox:
            job = self._assigned.get(queued.update_job.job_id)
            if job is not None:
                held.setdefault(job.id, job)
        if held:
            await self._send_now(
                ws,
                agent_pb.WorkerMessage(
                    migrate_job=agent_pb.MigrateJobRequest(job_ids=list(held), jobs=list(held.values()))
                ),
            )
            log.info("agent %s: reported %d job(s) held after reconnecting", self.label, len(held))

    def _forget_if_final(self, update: agent_pb.UpdateJobStatus) -> None:
        if update.status in FINAL_STATUSES:
            self._assigned.pop(update.job_id, None)

    async def wait_registered(self, count: int = 1) -> None:
        """Until this connection has registered `count` times in all (reconnects count) and is registered
        now."""
        async with self._registration:
            await self._registration.wait_for(lambda: self.connections >= count and self.registered.is_set())

    async def _registration_response(self, ws: aiohttp.ClientWebSocketResponse) -> agent_pb.ServerMessage:
        while True:
            message = await self._receive(ws)
            if message is None:
                raise ConnectionError("the server closed the connection before answering the registration")
            kind = message.WhichOneof("message")
            if kind == "register":
                return message
            log.warning(
                "agent %s: ignoring %s message before the registration response",
                self.label,
                kind or "an empty",
            )

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Receive until the connection ends, with the status and ping loops alongside."""
        self._last_pong = time.monotonic()
        # The two loops are awaited here, not in a TaskSet: their failure ends the connection (a reconnect).
        status = asyncio.ensure_future(self._status_loop(ws))
        pings = asyncio.ensure_future(self._ping_loop(ws))
        try:
            while True:
                receive = asyncio.ensure_future(self._receive(ws))
                waits = {"message": receive, "status": status, "pings": pings, "stop": self._stopping.wait()}
                if await first_of(waits) != "message":
                    receive.cancel()
                    for loop in (status, pings):
                        if loop.done() and loop.exception() is not None:
                            raise loop.exception()  # type: ignore[misc]
                    return  # stopping
                message = receive.result()
                if message is None:
                    raise ConnectionError("the server closed the agent connection")
                self._handle(message)
        finally:
            for task in (status, pings):
                task.cancel()
            await asyncio.gather(status, pings, return_exceptions=True)

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> agent_pb.ServerMessage | None:
        """The next well-formed server message; garbage is logged and skipped; None when closed."""
        while True:
            frame = await ws.receive()
            if frame.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return None
            if frame.type != aiohttp.WSMsgType.BINARY:
                log.warning(
                    "agent %s: ignoring a non-binary %s frame from the server", self.label, frame.type.name
                )
                continue
            message = agent_pb.ServerMessage()
            try:
                message.ParseFromString(frame.data)
            except DecodeError as exc:
                log.warning(
                    "agent %s: ignoring an undecodable server message (%d bytes): %s",
                    self.label,
                    len(frame.data),
                    exc,
                )
                continue
            return message

    # -- incoming messages --------------------------------------------------------------------

    def _handle(self, message: agent_pb.ServerMessage) -> None:
        kind = message.WhichOneof("message")
        if kind == "availability":
            job = message.availability.job
            with log_context(job=job.id, room=job.room.name):  # the answer's task and the job it starts
                self._tasks.spawn(self._answer_availability(message.availability))
        elif kind == "assignment":
            self._on_assignment(message.assignment)
        elif kind == "termination":
            self.host.on_termination(self, message.termination.job_id)
        elif kind == "pong":
            self._last_pong = time.monotonic()
            for waiter in self._pong_waiters:
                if not waiter.done():
                    waiter.set_result(message.pong.last_timestamp)
            self._pong_waiters.clear()
        elif kind == "register":
            log.warning("agent %s: ignoring a second registration response", self.label)
        elif kind == "go_away":
            log.info("agent %s: the server asked us to go away; reconnecting", self.label)
            self._tasks.spawn(self._close_ws())
        else:
            log.warning("agent %s: ignoring an unknown server message (%s)", self.label, kind or "empty")

    async def _answer_availability(self, request: agent_pb.AvailabilityRequest) -> None:
        job_id = request.job.id
        waiter: asyncio.Future[agent_pb.JobAssignment] = asyncio.get_running_loop().create_future()
        self._pending_assignments[job_id] = waiter
        try:
            answer = await self.host.on_availability(self, request)
            await self.send(agent_pb.WorkerMessage(availability=answer))
            if not answer.available:
                return
            try:
                assignment = await asyncio.wait_for(waiter, self.options.assignment_timeout)
            except TimeoutError:
                log.warning(
                    "agent %s: job %s accepted but not assigned within %.1f s",
                    self.label,
                    job_id,
                    self.options.assignment_timeout,
                )
                self.host.on_assignment_timeout(self, job_id)
                return
            self._assigned[job_id] = assignment.job
            await self.host.on_assignment(self, assignment)
        finally:
            self._pending_assignments.pop(job_id, None)

    def _on_assignment(self, assignment: agent_pb.JobAssignment) -> None:
        waiter = self._pending_assignments.get(assignment.job.id)
        if waiter is None or waiter.done():
            log.warning(
                "agent %s: ignoring an assignment for job %s, which we did not accept",
                self.label,
                assignment.job.id,
            )
            return
        waiter.set_result(assignment)

    # -- outgoing messages --------------------------------------------------------------------

    async def send(self, message: agent_pb.WorkerMessage) -> bool:
        """Send now if connected (True); job status updates are kept for the next connection otherwise."""
        ws = self._ws
        if ws is None or ws.closed or not self.registered.is_set():
            if message.WhichOneof("message") == "update_job":
                self._outbox.append(message)
            return False
        try:
            await self._send_now(ws, message)
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.warning("agent %s: send failed: %s", self.label, _describe(exc))
            if message.WhichOneof("message") == "update_job":
                self._outbox.append(message)
            return False
        return True

    async def _send_now(self, ws: aiohttp.ClientWebSocketResponse, message: agent_pb.WorkerMessage) -> None:
        await ws.send_bytes(message.SerializeToString())

    async def update_job(self, job_id: str, status: agent_pb.JobStatus, error: str = "") -> None:
        update = agent_pb.UpdateJobStatus(job_id=job_id, status=status, error=error)
        if await self.send(agent_pb.WorkerMessage(update_job=update)):
            self._forget_if_final(update)

    async def round_trip(self) -> float:
        """Ping and await the pong: the server has then handled everything sent before; returns seconds."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pong_waiters.append(waiter)
        started = time.monotonic()
        ws = self._ws
        if ws is None:
            raise ConnectionError("not connected")
        await self._send_now(
            ws, agent_pb.WorkerMessage(ping=agent_pb.WorkerPing(timestamp=int(time.time() * 1000)))
        )
        await waiter
        return time.monotonic() - started

    async def _status_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """UpdateWorkerStatus every status_interval, and at once when `status_changed` is set."""
        while True:
            status = self.last_status = self.host.worker_status()
            self._status_seq += 1
            await self._send_now(
                ws,
                agent_pb.WorkerMessage(
                    update_worker=agent_pb.UpdateWorkerStatus(
                        status=agent_pb.WS_FULL if status.full else agent_pb.WS_AVAILABLE,
                        load=status.load,
                        job_count=status.jobs,
                        draining=status.draining,
                        seq=self._status_seq,
                    )
                ),
            )
            self.status_changed.clear()
            try:
                await asyncio.wait_for(self.status_changed.wait(), self.options.status_interval)
            except TimeoutError:
                pass

    async def _ping_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            if time.monotonic() - self._last_pong > max(PONG_TIMEOUT, 3 * self.options.keepalive_interval):
                raise ConnectionError("no pong from the server")
            await self._send_now(
                ws, agent_pb.WorkerMessage(ping=agent_pb.WorkerPing(timestamp=int(time.time() * 1000)))
            )
            await asyncio.sleep(self.options.keepalive_interval)

    async def _close_ws(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    # -- lifetime -------------------------------------------------------------------------------

    async def flush(self, grace: float) -> None:
        """Give job status updates queued while disconnected a chance to go out before stopping."""
        if self._outbox and not self.registered.is_set():
            try:
                await asyncio.wait_for(self.registered.wait(), grace)
            except TimeoutError:
                log.warning("agent %s: %d job status update(s) not delivered", self.label, len(self._outbox))

    def stop(self) -> None:
        """Leave the connection loop (the caller waits for `run` to return)."""
        self._stopping.set()

    async def aclose(self) -> None:
        self.stop()
        await self._tasks.aclose()


def _describe(exc: BaseException) -> str:
    """What failed, in the operator's terms: DNS, connection refused, TLS, an HTTP status, a timeout."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        hint = " (not a LiveKit server, or a wrong path in the URL?)" if exc.status == 404 else ""
        return f"HTTP {exc.status} {exc.message}{hint}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS: cannot resolve {exc.host} ({_os_reason(exc)})"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        where = f" with {exc.host}:{exc.port}" if isinstance(exc, aiohttp.ClientConnectorError) else ""
        return f"TLS handshake{where} failed ({_os_reason(exc)}; a wss:// URL for a plain ws:// server?)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"connection refused by {exc.host}:{exc.port} (no server listening there?)"
        return f"cannot connect to {exc.host}:{exc.port} ({_os_reason(exc)})"
    return str(exc) or type(exc).__name__


def _os_reason(exc: BaseException) -> str:
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(cause, ssl.SSLError):
        return cause.reason or str(cause)
    return getattr(cause, "strerror", None) or str(cause)
