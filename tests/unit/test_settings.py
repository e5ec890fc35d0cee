"""Settings: layering, validation messages, masking, worker counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from framepool import machine, settings
from framepool.errors import ConfigError
from framepool.settings import Settings


def test_defaults_without_any_layer() -> None:
    loaded = settings.load(environ={})
    assert loaded == Settings()
    assert loaded.workers == 0 and loaded.load_threshold == 0.75


def test_precedence_toml_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("workers = 2\nmax_jobs = 5\nlog_level = 'debug'\n")
    loaded = settings.load(
        config,
        environ={"FRAMEPOOL_MAX_JOBS": "6", "FRAMEPOOL_LOG_LEVEL": "error"},
        overrides={"log_level": "warning"},
    )
    assert (loaded.workers, loaded.max_jobs, loaded.log_level) == (2, 6, "warning")


def test_environment_aliases_and_lists() -> None:
    loaded = settings.load(environ={"LIVEKIT_URL": "ws://x:7880", "FRAMEPOOL_CPUS": "0, 1 2"})
    assert loaded.livekit_url == "ws://x:7880"
    assert loaded.cpus == [0, 1, 2]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"FRAMEPOOL_WORKERS": "abc"},
            "bad setting workers = 'abc' (from FRAMEPOOL_WORKERS): expected `int`, got `str`",
        ),
        (
            {"FRAMEPOOL_WORKERS": "-1"},
            "bad setting workers = '-1' (from FRAMEPOOL_WORKERS): expected `int` >= 0",
        ),
        (
            {"FRAMEPOOL_LOG_LEVEL": "loud"},
            "bad setting log_level = 'loud' (from FRAMEPOOL_LOG_LEVEL): expected one of",
        ),
        (
            {"FRAMEPOOL_SINGLE_PEER_CONNECTION": "maybe"},
            "bad setting single_peer_connection = 'maybe' (from FRAMEPOOL_SINGLE_PEER_CONNECTION): "
            "expected true or false",
        ),
        (
            {"FRAMEPOOL_CPUS": "0,x"},
            "bad setting cpus[1] = ['0', 'x'] (from FRAMEPOOL_CPUS): expected `int`, got `str`",
        ),
    ],
)
def test_bad_values_name_key_value_source_and_expectation(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings.load(environ=environ)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_unknown_toml_key_and_bad_toml(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("wrokers = 2\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'wrokers' \(from .*c.toml\)"):
        settings.load(config, environ={})
    config.write_text("workers = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        settings.load(config, environ={})


def test_secret_value_is_not_echoed_in_errors_or_output() -> None:
    loaded = settings.load(environ={"LIVEKIT_API_SECRET": "hunter2"})
    assert settings.masked(loaded)["api_secret"] == "***"
    assert settings.masked(Settings())["api_secret"] == ""


def test_effective_workers_and_cpu_validation() -> None:
    assert machine.effective_workers(Settings(), [0, 1]) == 1
    assert machine.effective_workers(Settings(), [0]) == 1
    assert machine.effective_workers(Settings(), [0, 1, 2, 3]) == 3
    assert machine.effective_workers(Settings(workers=5), [0, 1]) == 5
    allowed = sorted(os.sched_getaffinity(0))
    assert machine.worker_cpus(Settings()) == allowed
    with pytest.raises(ConfigError, match="CPU 4096 is not available"):
        machine.worker_cpus(Settings(cpus=[4096]))


def test_field_docs_cover_every_field_with_a_description() -> None:
    rows = settings.field_docs()
    assert [row[0] for row in rows] == list(Settings.__struct_fields__)
    assert all(description for _, _, description, _ in rows)
    assert rows[[r[0] for r in rows].index("workers")][:2] == ("workers", "FRAMEPOOL_WORKERS")


def test_worker_memory_limit_is_on_by_default_and_derived_from_memory_and_workers() -> None:
    one, four = Settings(workers=1), Settings(workers=4)
    total = machine.machine_memory_mb()
    assert one.worker_memory_limit_mb == max(machine.MIN_DERIVED_LIMIT_MB, total // 2) > 0
    assert four.worker_memory_limit_mb == max(machine.MIN_DERIVED_LIMIT_MB, total // 2 // 4)
    assert one.worker_memory_warn_mb == one.worker_memory_limit_mb * 3 // 4 > 0
    # The same through every layer, and each value overridable, 0 still disabling.
    loaded = settings.load(environ={"FRAMEPOOL_WORKERS": "4"})
    assert loaded.worker_memory_limit_mb == four.worker_memory_limit_mb
    explicit = settings.load(environ={"FRAMEPOOL_WORKER_MEMORY_LIMIT_MB": "800"})
    assert (explicit.worker_memory_limit_mb, explicit.worker_memory_warn_mb) == (800, 600)
    off = settings.load(
        environ={"FRAMEPOOL_WORKER_MEMORY_LIMIT_MB": "0", "FRAMEPOOL_WORKER_MEMORY_WARN_MB": "0"}
    )
    assert (off.worker_memory_limit_mb, off.worker_memory_warn_mb) == (0, 0)
    warn_only = settings.load(overrides={"worker_memory_limit_mb": 0}, environ={})
    assert warn_only.worker_memory_warn_mb == one.worker_memory_warn_mb  # warned, never killed
    with pytest.raises(ConfigError, match="worker_memory_limit_mb = '-2'"):
        settings.load(environ={"FRAMEPOOL_WORKER_MEMORY_LIMIT_MB": "-2"})


def test_more_workers_than_usable_cpus_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    usable = len(os.sched_getaffinity(0))
    with caplog.at_level("WARNING", logger="framepool.settings"):
        assert machine.effective_workers(Settings(workers=usable), [0]) == usable
        assert not caplog.records
        assert machine.effective_workers(Settings(workers=usable + 1), [0]) == usable + 1
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert f"workers = {usable + 1} exceeds the {usable} CPU(s)" in record.getMessage()
    assert (record.workers, record.usable_cpus) == (usable + 1, usable)  # type: ignore[attr-defined]
