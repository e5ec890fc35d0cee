"""The public API in one import, and a worker that imports `framepool` does not load the LiveKit SDK."""

import subprocess
import sys


def test_public_names_import_from_the_package() -> None:
    from framepool import (
        AgentServer,
        AudioFrame,
        DataOutput,
        JobContext,
        JobRequest,
        Processor,
        TrackOutput,
        VideoFrame,
    )
    from framepool.agent.job import JobContext as JobContextDefinition
    from framepool.processors.api import Processor as ProcessorDefinition

    assert JobContext is JobContextDefinition and Processor is ProcessorDefinition
    assert all([AgentServer, AudioFrame, DataOutput, JobRequest, TrackOutput, VideoFrame])


def test_unknown_name_is_an_attribute_error() -> None:
    import framepool

    try:
        framepool.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("framepool.NoSuchThing resolved")


def test_importing_the_package_and_the_processor_api_leaves_the_sdk_unloaded() -> None:
    code = "import sys, framepool; from framepool import Processor; print('livekit.rtc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
