"""Log lines: the JSON record's fields (ISO timestamp, message, pid, process role, context), the context
following asyncio tasks, the text format's role tag, and json mode turning what Python prints raw
(uncaught exceptions, unraisable exceptions, warnings, library loggers) into JSON lines (test process; the
raw cases run in a child interpreter, since they replace process-wide hooks)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest

from framepool.logs import (
    FORMAT_ENV,
    LEVEL_ENV,
    iso_timestamp,
    log_context,
    route_uncaught,
    setup_logging,
)
from framepool.settings import env_name
from tests.support.timeouts import PROCESS

ISO_MILLIS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of `text` as a JSON object (a line that is not one fails the test, showing it)."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}\nin:\n{text}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


def captured(level: str, fmt: str, process: str = "supervisor") -> io.StringIO:
    stream = io.StringIO()
    setup_logging(level, fmt, stream=stream, process=process)  # type: ignore[arg-type]
    return stream


@pytest.fixture(autouse=True)
def text_logging_after() -> object:
    yield
    setup_logging("info", "text")


def test_iso_timestamp_is_utc_to_the_millisecond() -> None:
    assert iso_timestamp(0.9999) == "1970-01-01T00:00:00.999Z"  # truncated, never rounded up a second
    assert iso_timestamp(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
    assert iso_timestamp(1_700_000_000.0) == "2023-11-14T22:13:20.000Z"


def test_json_record_fields() -> None:
    stream = captured("info", "json")
    with log_context(job="AJ_1", room="r", agent="detector"), log_context(stream="AJ_1/TR_a/0"):
        logging.getLogger("framepool.test").info("hello %s", "world", extra={"worker": 2})
    logging.getLogger("framepool.test").debug("not shown")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("framepool.test").exception("outside")
    first, second = json_lines(stream.getvalue())
    assert list(first)[:7] == ["timestamp", "ts", "level", "process", "pid", "logger", "message"]
    assert ISO_MILLIS_UTC.fullmatch(str(first["timestamp"]))
    assert isinstance(first["ts"], float)
    as_utc = datetime.fromtimestamp(first["ts"], UTC)
    assert first["timestamp"] == as_utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{as_utc.microsecond // 1000:03d}Z"
    assert (first["level"], first["process"], first["pid"]) == ("info", "supervisor", os.getpid())
    assert (first["logger"], first["message"]) == ("framepool.test", "hello world")
    context = {key: first[key] for key in ("job", "room", "agent", "stream", "worker")}
    assert context == {"job": "AJ_1", "room": "r", "agent": "detector", "stream": "AJ_1/TR_a/0", "worker": 2}
    assert (second["message"], second["level"]) == ("outside", "error")
    assert "job" not in second and "msg" not in second
    assert "Traceback" in str(second["exc"]) and "ValueError: boom" in str(second["exc"])


def test_json_role_is_the_process_given() -> None:
    stream = captured("info", "json", process="bridge")
    logging.getLogger("framepool.bridge").warning("w")
    (record,) = json_lines(stream.getvalue())
    assert record["process"] == "bridge"


async def test_context_follows_the_tasks_started_inside_it_only() -> None:
    stream = captured("info", "json")
    logger = logging.getLogger("framepool.test")

    async def job_work() -> None:
        await asyncio.sleep(0)
        logger.info("inside the job")

    with log_context(job="AJ_2", room="r2", agent="a"):
        task = asyncio.create_task(job_work())
    await task
    logger.info("after")
    inside, after = json_lines(stream.getvalue())
    assert (inside["job"], inside["room"], inside["agent"]) == ("AJ_2", "r2", "a")
    assert not {"job", "room", "agent"} & set(after)


def test_text_lines_tag_roles_other_than_the_supervisor() -> None:
    supervisor = captured("debug", "text")
    with log_context(room="my room"):
        logging.getLogger("framepool.x").debug("ready")
    assert " DEBUG   framepool.x ready room='my room'" in supervisor.getvalue()
    worker = captured("info", "text", process="worker")
    with log_context(worker=3, job="AJ_3"):
        logging.getLogger("framepool.worker").info("started")
    assert " INFO    [worker 3] framepool.worker started job=AJ_3" in worker.getvalue()


def test_text_mode_gives_python_its_own_hooks_back() -> None:
    before = (sys.excepthook, threading.excepthook, sys.unraisablehook)
    captured("info", "json")
    assert sys.excepthook is not before[0] and threading.excepthook is not before[1]
    setup_logging("info", "text")
    assert (sys.excepthook, threading.excepthook, sys.unraisablehook) == before
    route_uncaught(False)  # twice is harmless
    assert (sys.excepthook, threading.excepthook, sys.unraisablehook) == before


RAW_OUTPUT = """
import asyncio, gc, logging, threading, warnings
from framepool.logs import setup_logging
setup_logging("debug", "json", process="worker")
logging.getLogger("aiohttp.access").info("GET /x 200")
logging.getLogger("livekit").error("livekit::rtc_engine:1:livekit::rtc_engine - engine failed")
warnings.warn("deprecated thing")
thread = threading.Thread(target=lambda: 1 / 0, name="helper")
thread.start(); thread.join()
class Broken:
    def __del__(self):
        raise RuntimeError("in a destructor")
Broken(); gc.collect()
async def main():
    async def fails():
        raise KeyError("lost")
    task = asyncio.ensure_future(fails())
    await asyncio.sleep(0.01)
    del task; gc.collect()
asyncio.run(main())
raise SystemError("uncaught at the top")
"""


def test_json_mode_turns_raw_python_output_into_json_lines() -> None:
    run = subprocess.run([sys.executable, "-c", RAW_OUTPUT], capture_output=True, text=True, timeout=PROCESS)
    assert run.returncode == 1 and run.stdout == ""
    records = json_lines(run.stderr)
    assert all(record["process"] == "worker" and record["pid"] == records[0]["pid"] for record in records)
    messages = [str(record["message"]) for record in records]
    assert messages[:2] == ["GET /x 200", "livekit::rtc_engine:1:livekit::rtc_engine - engine failed"]
    by_logger = {str(record["logger"]): record for record in records}
    assert "deprecated thing" in str(by_logger["py.warnings"]["message"])
    excs = {
        str(record["message"]).splitlines()[0].split(":")[0]: str(record.get("exc", "")) for record in records
    }
    assert "ZeroDivisionError" in excs["uncaught ZeroDivisionError in thread helper"]
    assert "RuntimeError: in a destructor" in excs["Exception ignored in"]
    assert "KeyError: 'lost'" in excs["Task exception was never retrieved"]
    assert "SystemError: uncaught at the top" in excs["uncaught SystemError"]


def test_the_forkserver_logs_as_its_environment_says() -> None:
    assert (env_name("log_level"), env_name("log_format")) == (LEVEL_ENV, FORMAT_ENV)
    code = "import framepool.pool.forkserver, logging; logging.getLogger('framepool.x').debug('forked')"
    env = {**os.environ, LEVEL_ENV: "debug", FORMAT_ENV: "json"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=PROCESS
    )
    assert run.returncode == 0, run.stderr
    (record,) = json_lines(run.stderr)
    assert (record["process"], record["message"], record["level"]) == ("forkserver", "forked", "debug")
