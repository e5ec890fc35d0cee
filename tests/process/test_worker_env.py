"""Workers start with an allow-listed environment and no record of the supervisor's pid (issue 10, item 6).

The secret is put in this process's environment (the supervisor's) before the pool starts; a fresh
forkserver is started for the test, so it is exec'd with that environment in reach: what it and its
workers show is what the scrubbing left.
"""

from __future__ import annotations

import multiprocessing.forkserver
from collections.abc import Iterator
from typing import Any

import pytest

from framepool.pool import WorkerPool
from framepool.pool.spawn import worker_environment
from tests.support.pool import AUDIO_10MS, RecordingSink, audio_frame, audio_spec, settings

pytestmark = pytest.mark.process

SECRET = "s3cr3t-value-that-must-stay-in-the-supervisor"


@pytest.fixture
def secret_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The LiveKit credentials and an unrelated variable in the supervisor's environment, and no forkserver
    started before they were there."""
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    monkeypatch.setenv("LIVEKIT_API_KEY", "key-" + SECRET)
    monkeypatch.setenv("LIVEKIT_URL", "ws://example.invalid")
    monkeypatch.setenv("UNRELATED_TOKEN", SECRET)
    monkeypatch.setenv("PASSED_ON", "yes")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]
    yield


async def _probe(**overrides: Any) -> tuple[dict[str, Any], WorkerPool]:
    pool = WorkerPool(settings(**overrides))
    await pool.start()
    sink = RecordingSink()
    stream = await pool.attach(audio_spec("env", f'tests.support.procs:EnvProbe(secret="{SECRET}")'), sink)
    await stream.push_wait(audio_frame(1), 10_000, AUDIO_10MS)
    await sink.wait_for(lambda: bool(sink.payloads("env")), "the probe's report")
    await stream.detach()
    return sink.payloads("env")[0], pool


def _proc_environ(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as file:
        return file.read()


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
async def test_default_worker_environment_is_scrubbed(
    method: str, secret_environment: None, shm_unchanged: None
) -> None:
    report, pool = await _probe(start_method=method, worker_env=["PASSED_ON"])
    try:
        assert report["secret_in_environ"] is False
        assert report["secret_in_proc"] is False  # the exec'd environment, not only os.environ
        assert report["livekit_in_proc"] is False
        for names in (report["names"], report["proc_names"]):
            assert not [name for name in names if name.startswith("LIVEKIT_")]
            assert "UNRELATED_TOKEN" not in names
            assert "OMP_NUM_THREADS" in names  # the thread settings a worker needs
        assert "PASSED_ON" in report["names"]  # worker_env adds to the allow-list
        assert "PATH" in report["names"]
        # multiprocessing's record of the parent (the supervisor under forkserver) was dropped
        assert report["parent_pid"] is None and report["recorded_parent"] is None
        if method == "forkserver":
            server = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
            assert SECRET.encode() not in _proc_environ(server)
            assert b"LIVEKIT_" not in _proc_environ(server)
    finally:
        await pool.aclose()


def test_worker_environment_allow_list() -> None:
    environ = {
        "PATH": "/bin",
        "LC_ALL": "C",
        "PYTHONPATH": "/src",
        "MKL_NUM_THREADS": "2",
        "LIVEKIT_API_SECRET": "x",
        "HF_HOME": "/models",
        "CUDA_VISIBLE_DEVICES": "0",
        "AWS_SECRET_ACCESS_KEY": "y",
        "NOTIFY_SOCKET": "/run/systemd/notify",
    }
    assert worker_environment(["HF_HOME", "CUDA_*", "LIVEKIT_API_SECRET"], environ) == {
        "PATH": "/bin",
        "LC_ALL": "C",
        "PYTHONPATH": "/src",
        "MKL_NUM_THREADS": "2",
        "HF_HOME": "/models",
        "CUDA_VISIBLE_DEVICES": "0",
    }
