"""The command line: generated flags, one-line errors with exit codes, config output."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from framepool import cli
from framepool.settings import Settings, field_docs
from tests.support.timeouts import PROCESS


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value for key, value in os.environ.items() if not key.startswith(("FRAMEPOOL_", "LIVEKIT_"))
    }
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "framepool.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=PROCESS,
    )


def test_bad_flag_value_exits_2_with_one_line() -> None:
    result = run_cli("--workers", "abc", "config")
    assert result.returncode == 2
    assert (
        result.stderr
        == "framepool: bad setting workers = 'abc' (from --workers): expected `int`, got `str`\n"
    )
    assert result.stdout == ""


def test_bad_environment_value_names_the_variable() -> None:
    result = run_cli("config", env={"FRAMEPOOL_WORKERS": "abc"})
    assert result.returncode == 2
    assert (
        result.stderr
        == "framepool: bad setting workers = 'abc' (from FRAMEPOOL_WORKERS): expected `int`, got `str`\n"
    )


def test_out_of_range_value_and_flag_after_subcommand() -> None:
    result = run_cli("config", "--load-threshold", "1.5")
    assert result.returncode == 2
    assert "bad setting load_threshold = '1.5' (from --load-threshold)" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = run_cli("config", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"framepool: config file {tmp_path / 'nope.toml'} does not exist"


def test_config_masks_secrets_and_layers_flags_over_env_over_toml(tmp_path: Path) -> None:
    config = tmp_path / "framepool.toml"
    config.write_text(
        'workers = 3\nlog_level = "debug"\ncpus = [0]\n'
        '[[agents]]\nagent_name = "meter"\naudio = ["audio-level"]\n'
    )
    result = run_cli(
        "--config", str(config), "config", "--log-level", "warning", "--cpus", "0,1",
        env={"LIVEKIT_API_SECRET": "topsecret", "FRAMEPOOL_LOG_LEVEL": "error", "FRAMEPOOL_MAX_JOBS": "7"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "topsecret" not in result.stdout
    printed = tomllib.loads(result.stdout)
    assert printed["api_secret"] == "***"
    assert printed["workers"] == 3  # TOML
    assert printed["max_jobs"] == 7  # environment
    assert printed["log_level"] == "warning"  # flag over environment over TOML
    assert printed["cpus"] == [0, 1]
    assert printed["agents"][0]["agent_name"] == "meter"
    assert set(printed) == set(Settings.__struct_fields__)


def test_every_setting_has_a_flag_except_structured_ones() -> None:
    parser = cli.build_parser()
    options = {option for action in parser._actions for option in action.option_strings}
    for field, *_ in field_docs():
        assert (cli.flag_name(field) in options) == (field not in ("agents", "sinks"))


def test_flags_are_parsed_in_process_without_defaults_shadowing_env() -> None:
    args = cli.build_parser().parse_args(["--workers", "2", "config"])
    settings = cli.load_settings(args)
    assert settings.workers == 2
    assert not hasattr(args, "load_threshold")


def test_reference_lists_every_setting_as_text_and_markdown() -> None:
    text = run_cli("config", "--reference")
    markdown = run_cli("config", "--reference", "--markdown")
    assert text.returncode == markdown.returncode == 0
    rows = [line for line in markdown.stdout.splitlines() if line.startswith("| `")]
    assert len(rows) == len(field_docs())
    assert "| `workers` | `--workers` | `FRAMEPOOL_WORKERS` | `0` |" in markdown.stdout
    assert "`LIVEKIT_API_SECRET`" in markdown.stdout
    for field, env, description, _ in field_docs():
        assert field in text.stdout and env in text.stdout and description in text.stdout


def test_usage_errors_exit_2_without_traceback() -> None:
    result = run_cli("config", "--bogus")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "unrecognized arguments: --bogus" in result.stderr


def test_devserver_keys_parse() -> None:
    assert cli.parse_keys("a:b,c:d") == {"a": "b", "c": "d"}
    with pytest.raises(cli.ConfigError, match="KEY:SECRET"):
        cli.parse_keys("nosecret")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_prints_one_line_per_interval_on_a_terminal_only() -> None:
    from framepool.offline.runner import PROGRESS_INTERVAL, Progress

    now = [0.0]
    terminal = Terminal()
    progress = Progress(60.0, stream=terminal, clock=lambda: now[0])
    for step in range(100):  # 100 frames over 2.5 intervals
        now[0] = step * PROGRESS_INTERVAL / 40
        progress.update(step * 0.1)
    assert terminal.getvalue().splitlines() == [
        "framepool: 4.0 s of 60.0 s (7 %) processed",
        "framepool: 8.0 s of 60.0 s (13 %) processed",
    ]
    piped = io.StringIO()
    silent = Progress(None, stream=piped, clock=lambda: now[0])
    now[0] += 100
    silent.update(1.0)
    assert piped.getvalue() == ""


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(args: object, settings: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_config", interrupted)
    assert cli.main(["config"]) == 130
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["process", "in.wav", "--processor", "loudness"],
        ["process", "--processor", "loudness", "in.wav"],
        ["--workers", "1", "process", "in.wav", "--processor", "vad,silence", "--output", "out.jsonl"],
    ],
)
def test_process_takes_its_processor_flag_in_any_position(argv: list[str]) -> None:
    """`--processor` is also a prefix of the --processor-* settings flags: it must not read as ambiguous."""
    args = cli.build_parser().parse_args(argv)
    assert args.command == "process" and str(args.input) == "in.wav"
    assert args.processor == [argv[argv.index("--processor") + 1]]
