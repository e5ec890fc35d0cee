"""WorkerResource in one process: loaded once on first use, shared by instances, released newest first.

That the worker loads it (not the supervisor) and that two streams share it is shown in tests/process.
"""

from __future__ import annotations

import logging
import os

import pytest

from framepool.processors import AudioFrame, AudioProcessor, NoParams, ProcessContext, WorkerResource
from framepool.processors.resource import release_all, resources_of


class Ledger:
    def __init__(self) -> None:
        self.events: list[str] = []

    def loader(self, name: str) -> WorkerResource[dict[str, str]]:
        def load() -> dict[str, str]:
            self.events.append(f"load {name}")
            return {"name": name, "pid": str(os.getpid())}

        def release(value: dict[str, str]) -> None:
            self.events.append(f"release {value['name']}")
            if name == "broken":
                raise RuntimeError("cannot close")

        return WorkerResource(load, release=release)


def test_loaded_once_shared_by_instances_and_inherited() -> None:
    ledger = Ledger()

    class Base(AudioProcessor[NoParams]):
        name = "base"
        model = ledger.loader("model")

        def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
            pass

    class Derived(Base):
        tokenizer = ledger.loader("tokenizer")

    try:
        assert not Base.model.loaded and ledger.events == []  # declaring it loads nothing
        first, second = Base(NoParams()), Derived(NoParams())
        assert first.model is second.model and first.model["pid"] == str(os.getpid())
        assert ledger.events == ["load model"]
        assert resources_of(Derived) == [Base.model, Derived.tokenizer]
        assert Base.model.name.endswith("Base.model")
    finally:
        release_all()
    assert ledger.events == ["load model", "release model"]
    assert not Base.model.loaded


def test_release_all_goes_newest_first_and_survives_a_failing_release(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = Ledger()
    resources = [ledger.loader(name) for name in ("first", "broken", "last")]
    for resource in resources:
        resource.get()
    with caplog.at_level(logging.ERROR, logger="framepool.processors.resource"):
        release_all()
    assert ledger.events[3:] == ["release last", "release broken", "release first"]
    assert "releasing" in caplog.text and "cannot close" in caplog.text
    assert not any(resource.loaded for resource in resources)
    release_all()  # nothing left: releases run once
    assert len(ledger.events) == 6
