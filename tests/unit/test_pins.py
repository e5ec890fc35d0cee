"""The dev server depends on the SDK's signalling and on aiortc internals: a new minor of either must fail
here first."""

from importlib.metadata import version

import pytest


def test_livekit_sdk_minor_is_the_one_the_dev_server_speaks() -> None:
    assert version("livekit").startswith("1.2."), (
        "livekit's signalling changes between minors: re-probe DESIGN.md's facts"
    )


def test_aiortc_minor_is_the_one_the_dev_server_patches() -> None:
    pytest.importorskip("aiortc", reason="the dev server's aiortc is the optional devserver extra")
    assert version("aiortc").startswith("1.16."), (
        "the dev server patches aiortc internals: re-check them for this release"
    )
