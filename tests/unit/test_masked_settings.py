"""`framepool config` shows the settings with every credential masked: the API secret and what sinks'
options hold (test process)."""

from __future__ import annotations

from framepool.bridge.registry import SinkSpec, masked_options
from framepool.settings import Settings, masked


def test_sink_credentials_are_masked_and_the_rest_shown() -> None:
    options = {
        "url": "https://user:hunter2@hooks.example/in",
        "secret": "whsec_c2VjcmV0",
        "headers": {"Authorization": "Bearer abc", "X-Env": "prod"},
        "dsn": "host=db user=app password='p w' dbname=x",
        "redis": "rediss://:s3cret@cache:6380/0",
        "api_key": "",  # nothing to hide
        "timeout": 5.0,
        "nested": [{"token": "t0k"}],
    }
    assert masked_options(options) == {
        "url": "https://user:***@hooks.example/in",
        "secret": "***",
        "headers": {"Authorization": "***", "X-Env": "***"},
        "dsn": "host=db user=app password=*** dbname=x",
        "redis": "rediss://:***@cache:6380/0",
        "api_key": "",
        "timeout": 5.0,
        "nested": [{"token": "***"}],
    }


def test_masked_settings_hide_the_api_secret_and_sink_secrets() -> None:
    settings = Settings(
        api_secret="topsecret",
        sinks=[SinkSpec(name="hook", type="webhook", options={"url": "http://h/x", "secret": "whsec_x"})],
    )
    shown = masked(settings)
    assert shown["api_secret"] == "***"
    assert shown["sinks"] == [
        {"name": "hook", "type": "webhook", "options": {"url": "http://h/x", "secret": "***"}}
    ]
    assert settings.sinks[0].options["secret"] == "whsec_x"  # the settings themselves are untouched
