"""ConnectionOptions repeats no setting's default: every field that is a setting comes from the settings."""

from __future__ import annotations

import dataclasses

from framepool.agent.registration import ConnectionOptions
from framepool.settings import Settings


def test_settings_backed_fields_have_no_default_of_their_own() -> None:
    shared = [f for f in dataclasses.fields(ConnectionOptions) if f.name in Settings.__struct_fields__]
    assert {f.name for f in shared} >= {"api_key", "status_interval", "assignment_timeout", "max_retry"}
    assert [f.name for f in shared if f.default is not dataclasses.MISSING] == []


def test_from_settings_takes_every_shared_field() -> None:
    settings = Settings(api_key="k", api_secret="s", status_interval=1.5, assignment_timeout=3.0, max_retry=2)
    options = ConnectionOptions.from_settings(settings, url="ws://example")
    for field in dataclasses.fields(ConnectionOptions):
        if field.name in Settings.__struct_fields__:
            assert getattr(options, field.name) == getattr(settings, field.name), field.name
    assert options.url == "ws://example"
