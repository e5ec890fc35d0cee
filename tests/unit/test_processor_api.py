"""The Processor API as the supervisor uses it: typed params, formats from the class, kinds, format groups."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from framepool.agent.session import make_rule
from framepool.errors import ProcessorError
from framepool.pool import WorkerPool, format_groups, input_format_of, ring_slots
from framepool.pool.contract import StreamSpec
from framepool.processors import (
    KINDS,
    AudioFormat,
    AudioFrame,
    AudioProcessor,
    NoParams,
    ProcessContext,
    VideoFormat,
    VideoFrame,
    kind_of,
    media_kind,
    parse_spec,
    parse_specs,
    resolve,
)
from framepool.settings import Settings
from tests.support import procs


class ThresholdParams(msgspec.Struct):
    threshold: int = 3


class Threshold(AudioProcessor[ThresholdParams]):
    name = "threshold"

    def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
        pass


def test_params_come_from_the_type_argument_and_the_default_format_from_the_kind() -> None:
    assert Threshold.Params is ThresholdParams
    assert Threshold.kind == "audio"
    assert Threshold.input_format(ThresholdParams()) == AudioFormat()
    assert Threshold(ThresholdParams(threshold=5)).params.threshold == 5


def test_a_params_attribute_that_contradicts_the_type_argument_is_refused() -> None:
    with pytest.raises(TypeError, match="Params is NoParams but the type argument says ThresholdParams"):

        class Contradiction(AudioProcessor[ThresholdParams]):
            Params = NoParams

            def process(self, frame: AudioFrame, ctx: ProcessContext) -> None:
                pass


def test_an_instance_method_input_format_is_a_clear_error() -> None:
    with pytest.raises(ProcessorError, match="input_format must be a classmethod"):
        resolve(parse_spec("tests.support.procs:LegacyFormat"))


def test_the_kind_registry_knows_every_kind_and_data_streams_are_attached_apart() -> None:
    assert list(KINDS) == ["audio", "video", "data"]
    assert (media_kind("audio").frame_type, media_kind("video").frame_type) == (AudioFrame, VideoFrame)
    assert kind_of(VideoFormat(pixel_format="RGBA")) is media_kind("video")
    with pytest.raises(
        ProcessorError, match=r"'tests\.support\.procs:DataTap' is a data processor: attach it with"
    ):
        make_rule("tests.support.procs:DataTap", None, None, None)
    with pytest.raises(ProcessorError, match="unknown stream kind 'smell'"):
        media_kind("smell")


async def test_the_pool_refuses_a_stream_whose_processors_are_of_another_kind() -> None:
    pool = WorkerPool(Settings(workers=1))  # not started: the kinds are checked first
    spec = StreamSpec(stream_id="d", kind="data", processors=[parse_spec("audio-level")], max_frame_bytes=1)
    with pytest.raises(ProcessorError, match="stream 'd' is data but its processors take AudioFormat"):
        await pool.attach(spec, sink=None)  # type: ignore[arg-type]


def test_ring_slots_come_from_the_kind() -> None:
    settings = Settings(audio_ring_ms=320, video_ring_slots=6)
    assert ring_slots(settings, AudioFormat(frame_ms=10)) == 32
    assert ring_slots(settings, AudioFormat(frame_ms=100)) == 4  # never fewer than MIN_AUDIO_RING_SLOTS
    assert ring_slots(settings, VideoFormat()) == 6
    assert (
        media_kind("audio").realtime_ring == "drop_newest" and media_kind("video").realtime_ring == "latest"
    )


def test_processors_wanting_different_formats_get_one_group_each() -> None:
    specs = parse_specs(
        "tests.support.procs:AudioProbe(sample_rate=16000, frame_ms=20),audio-level,"
        "tests.support.procs:AudioProbe(sample_rate=48000, frame_ms=100)"
    )
    groups = format_groups(specs)
    assert [(group.fmt, [spec.name for spec in group.specs]) for group in groups] == [
        (AudioFormat(sample_rate=16000, frame_ms=20), ["tests.support.procs:AudioProbe"]),
        (
            AudioFormat(frame_ms=100),
            ["audio-level", "tests.support.procs:AudioProbe"],
        ),  # audio-level: 100 ms frames
    ]
    with pytest.raises(ProcessorError, match="need different input formats"):
        input_format_of(specs)


def test_video_groups_merge_maxima_but_not_pixel_formats() -> None:
    specs = parse_specs(
        "tests.support.procs:SizeProbe(max_width=160),tests.support.procs:VideoProbe(pixel_format=RGB24),"
        "tests.support.procs:SizeProbe(max_width=320, max_height=90),video-motion"
    )
    groups = format_groups(specs)
    assert [group.fmt for group in groups] == [VideoFormat(), VideoFormat(pixel_format="RGB24")]
    assert [len(group.specs) for group in groups] == [3, 1]


def test_an_attach_gets_one_group_per_format_and_refuses_mixed_kinds() -> None:
    rule = make_rule(["tests.support.procs:AudioProbe(sample_rate=16000)", "audio-level"], None, None, None)
    assert rule.kind == "audio" and len(rule.groups) == 2
    with pytest.raises(ProcessorError, match="'audio-level' and 'video-motion' mix audio and video"):
        make_rule(["audio-level", "video-motion"], None, None, None)


def test_the_supervisor_learns_formats_without_constructing(tmp_path: Path) -> None:
    """ModelUser's constructor records the process it runs in, and its model counts its loads: validating
    an attach, a declarative agent and an offline plan must do neither here."""
    from framepool.agent.declarative import build_agents
    from framepool.demo.samples import write_test_sample
    from framepool.offline.media import open_input
    from framepool.offline.runner import plan_streams
    from framepool.settings import AgentSpec

    spec = parse_spec("tests.support.procs:ModelUser")
    assert input_format_of([spec]) == AudioFormat(frame_ms=20)
    make_rule([spec], None, None, None)
    build_agents([AgentSpec(audio=["tests.support.procs:ModelUser"])])
    path = tmp_path / "tone.mp4"
    write_test_sample(path, 0.2, video=False)
    container = open_input(path)
    try:
        [run] = plan_streams(container, [spec], path)
    finally:
        container.close()
    assert run.converter.max_frame_bytes == 48 * 20 * 2
    assert procs.CONSTRUCTED_IN == [] and procs.LOADS == []


def test_the_processor_api_is_in_the_one_import() -> None:
    import framepool
    from framepool.processors import api, resource

    assert (framepool.AudioProcessor, framepool.VideoProcessor, framepool.NoParams) == (
        api.AudioProcessor,
        api.VideoProcessor,
        api.NoParams,
    )
    assert framepool.WorkerResource is resource.WorkerResource
