"""Property-based fuzzing of what crosses a trust boundary (test process): control messages, slot descriptors,
settings and processor specs. Each property states its case count (`max_examples`, about 10,000 in all) and
runs without a deadline: a loaded 2-core machine makes per-example timing meaningless, the suite's
per-test limit still bounds the whole.

What is asserted is the contract of each decoder: a well-formed input round-trips; anything else raises the
one error type its callers handle (ChannelError, SlotError, ConfigError), with a one-line message, never
another exception.
"""

from __future__ import annotations

import string
import typing
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from framepool import settings as fp_settings
from framepool.errors import ChannelError, ConfigError
from framepool.ipc import control, slots
from framepool.ipc.pyring import FrameHeader as Header  # a descriptor as the ring hands it over
from framepool.processors.api import VideoFormat
from framepool.processors.registry import ProcessorSpec, parse_spec
from framepool.worker.scale import downscale, scale_factor


def fuzz(cases: int) -> settings:
    """`cases` examples, no per-example deadline, the same examples on every run (a suite that fails at
    random is no gate; what a wider search finds is added as an explicit `@example`)."""
    return settings(
        max_examples=cases, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
    )


# -- control messages --------------------------------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
processor_specs = st.builds(
    ProcessorSpec,
    st.from_regex(r"[A-Za-z0-9_.:\-]{1,24}", fullmatch=True),
    st.dictionaries(identifiers, json_values, max_size=4),
)


msgpack_ints = st.integers(-(2**63), 2**63 - 1)


def _field_strategy(hint: Any) -> st.SearchStrategy[Any]:
    """A field's values from its annotation: integers kept in msgpack's range (the encoder's own limit),
    bounded counts and seconds (control.Count, control.Seconds) within their bounds."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        base, meta = args[0], args[1]
        return (st.integers if base is int else st.floats)(meta.ge, meta.le)
    if hint is int:
        return msgpack_ints
    if hint == int | None:
        return msgpack_ints | st.none()
    if hint == list[ProcessorSpec]:
        return st.lists(processor_specs, max_size=3)
    if origin is list:
        return st.lists(_field_strategy(args[0]), max_size=4)
    if origin is dict:
        return st.dictionaries(_field_strategy(args[0]), _field_strategy(args[1]), max_size=4)
    if isinstance(hint, type) and hasattr(hint, "__struct_fields__"):  # a nested Struct (CallBudget)
        return _message_strategy(hint)
    return st.from_type(hint)


def _message_strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return st.builds(cls, **{name: _field_strategy(hints[name]) for name in cls.__struct_fields__})


messages = st.one_of([_message_strategy(cls) for cls in typing.get_args(control.Message)])


@fuzz(1500)
@given(messages)
def test_control_messages_round_trip(message: control.Message) -> None:
    try:
        frame = control.encode(message)
    except ChannelError as exc:  # oversize: refused before anything is sent, with a one-line reason
        assert "exceeds" in str(exc) and "\n" not in str(exc)
        return
    decoded = control.decode(frame)
    assert type(decoded) is type(message)
    assert control.encode(decoded) == frame  # bytes, not ==: NaN floats and all


@fuzz(2000)
@given(st.binary(max_size=512))
# A tag holding a newline: msgspec quotes it in its error, which reached the log as a forged second line.
@example(control._PREFIX.pack(15) + msgspec.msgpack.encode({"type": "\nhutdown"}))
def test_control_decode_of_arbitrary_bytes_is_a_message_or_a_channel_error(frame: bytes) -> None:
    _decode_or_channel_error(frame)


@fuzz(1500)
@given(messages, st.data())
def test_control_decode_of_corrupted_messages_is_a_message_or_a_channel_error(
    message: control.Message, data: st.DataObject
) -> None:
    """Valid frames with bytes flipped, cut or appended (the length prefix kept consistent half of the time):
    these reach the msgpack decoder and the type checks, which random bytes mostly do not."""
    try:
        frame = bytearray(control.encode(message))
    except ChannelError:
        return
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(4, max(4, len(frame) - 1)))
        if at < len(frame):
            frame[at] = data.draw(st.integers(0, 255))
    frame += data.draw(st.binary(max_size=8))
    if data.draw(st.booleans()):
        frame[:4] = control._PREFIX.pack(len(frame) - 4)
    _decode_or_channel_error(bytes(frame))


def _decode_or_channel_error(frame: bytes) -> None:
    try:
        decoded = control.decode(frame)
    except ChannelError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(decoded, typing.get_args(control.Message))


# -- slot descriptors --------------------------------------------------------------------------------------


u32 = st.integers(0, 2**32 - 1)
small = st.integers(0, 70)  # geometry words that can match a short payload
headers = st.builds(
    Header,
    seq=st.integers(0, 2**64 - 1),
    ts_us=st.integers(-(2**63), 2**63 - 1),
    kind=st.integers(0, 6) | u32,
    fmt=st.integers(0, 7) | u32,
    flags=u32,
    a=small | u32,
    b=small | u32,
    c=small | u32,
    length=st.integers(0, 600) | st.integers(0, 2**64 - 1),
)


def _payload(header: Header, data: st.DataObject) -> memoryview:
    """The slot's bytes: `length` of them when that is small (as the ring gives them), else a short buffer."""
    size = header.length if header.length <= 600 else data.draw(st.integers(0, 64))
    return memoryview(data.draw(st.binary(min_size=size, max_size=size)))


@fuzz(1500)
@given(headers, st.data(), st.booleans())
def test_decode_frame_of_arbitrary_descriptors_is_a_frame_or_a_slot_error(
    header: Header, data: st.DataObject, lost: bool
) -> None:
    view = _payload(header, data)
    try:
        frame = slots.decode_frame(header, view, lost)
    except slots.SlotError as exc:
        assert "\n" not in str(exc)
    else:
        assert frame.gap >= lost


@fuzz(1000)
@given(headers, st.data())
def test_decode_output_of_arbitrary_descriptors_is_a_frame_or_a_slot_error(
    header: Header, data: st.DataObject
) -> None:
    try:
        slots.decode_output(header, _payload(header, data))
    except slots.SlotError as exc:
        assert "\n" not in str(exc)


@fuzz(1000)
@given(headers, st.data(), st.lists(st.text(max_size=4), max_size=3), st.booleans())
def test_decode_result_of_arbitrary_descriptors_is_a_result_or_a_slot_error(
    header: Header, data: st.DataObject, processors: list[str], right_key: bool
) -> None:
    view = _payload(header, data)
    key = int.from_bytes(view[: slots.KEY_BYTES], "little") ^ (not right_key)  # reach the checks after it
    try:
        slots.result_stream(header)
        result = slots.decode_result(header, view, "s", processors, key)
    except slots.SlotError as exc:
        assert "\n" not in str(exc)
    else:
        assert result.processor in processors
        msgspec.json.decode(result.data)


@fuzz(500)
@given(
    st.integers(0, 2**16),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**16),
    st.text(max_size=300),
    st.binary(max_size=64),
)
def test_result_slots_written_are_decoded_back(
    stream: int, key: int, processor: int, topic: str, body: bytes
) -> None:
    body = msgspec.json.encode(body.hex())
    try:
        shape, payload = slots.result_slot(stream, key, processor, topic, body)
    except ValueError:
        assert len(topic.encode()) > slots.MAX_TOPIC_BYTES
        return
    written: list[Header] = []

    class Recorder:  # the descriptor exactly as the encoder hands it to a ring
        def write(self, data: Any, seq: int, ts_us: int, kind: int, fmt: int, flags: int, *abc: int) -> bool:
            written.append(Header(seq, ts_us, kind, fmt, flags, *abc, len(bytes(data))))
            return True

    shape.write(Recorder(), payload, 7, 1)
    header = written[0]
    names = [f"p{i}" for i in range(processor + 1)]
    result = slots.decode_result(header, memoryview(payload), "s", names, key)
    assert (slots.result_stream(header), result.processor, result.topic) == (stream, f"p{processor}", topic)
    assert bytes(result.data) == body
    with pytest.raises(slots.SlotError, match="without that stream's key"):
        slots.decode_result(header, memoryview(payload), "s", names, key ^ 1)


# -- settings ----------------------------------------------------------------------------------------------

FIELDS = sorted(fp_settings.Settings.__struct_fields__)
setting_keys = st.sampled_from(FIELDS) | st.text(max_size=12)
toml_scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.datetimes()
    | st.dates()
    | st.times()
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)
env_strings = st.text(max_size=20) | st.sampled_from(["", "0", "-1", "1e400", "nan", "true", "1,2", " 3 "])


def _settings_or_one_line_error(**layers: Any) -> None:
    try:
        loaded = fp_settings.load(**layers)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
    else:
        assert isinstance(loaded, fp_settings.Settings)


@fuzz(1000)
@given(st.dictionaries(setting_keys, toml_values, max_size=4))
def test_settings_from_arbitrary_toml_values_or_one_line_error(values: dict[str, Any]) -> None:
    """A parsed TOML file's tables, merged as `load` merges them (the text itself: the property below)."""
    try:
        loaded = fp_settings._validate({key: (value, "framepool.toml") for key, value in values.items()})
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc), str(exc)
    else:
        assert isinstance(loaded, fp_settings.Settings)


@fuzz(500)
@given(st.dictionaries(st.sampled_from(FIELDS), toml_values, max_size=3))
def test_settings_from_arbitrary_flag_values_or_one_line_error(values: dict[str, Any]) -> None:
    _settings_or_one_line_error(environ={}, overrides=values)


@fuzz(1500)
@given(
    st.dictionaries(
        st.sampled_from([fp_settings.env_name(f) for f in FIELDS if fp_settings.env_name(f)]),
        env_strings,
        max_size=4,
    )
)
def test_settings_from_arbitrary_environment_strings_or_one_line_error(environ: dict[str, str]) -> None:
    _settings_or_one_line_error(environ=environ)


@fuzz(300)
@given(st.text(alphabet=string.printable, max_size=80) | st.sampled_from(["workers = 1\nworkers = 2", "[x"]))
def test_settings_from_arbitrary_toml_text_or_one_line_error(tmp_path_factory: Any, text: str) -> None:
    path = tmp_path_factory.mktemp("toml", numbered=True) / "framepool.toml"
    path.write_text(text)
    _settings_or_one_line_error(config_file=path, environ={})


# -- processor specs and downscaling (bugs the fuzzing found) ----------------------------------------------


@fuzz(1000)
@given(processor_specs)
@example(ProcessorSpec("x", {"a": 'q\\",b'}))  # a `\"` followed by a comma split the value in two
@example(ProcessorSpec("x", {"a": {"k": 1, "j": 2}}))  # a comma inside an object
def test_parse_spec_round_trips_its_own_text(spec: ProcessorSpec) -> None:
    assert parse_spec(str(spec)) == spec


@fuzz(600)
@given(
    st.integers(1, 1200),
    st.integers(1, 1200),
    st.integers(0, 400),
    st.integers(0, 400),
    st.sampled_from(["I420", "RGB24", "RGBA"]),
)
@example(1000, 3, 100, 0, "RGB24")  # one side smaller than the factor: raised before
@example(1000, 3, 100, 0, "I420")
@example(3, 1000, 0, 100, "RGBA")
def test_downscale_fits_any_frame_within_the_maximum(
    width: int, height: int, max_width: int, max_height: int, pixel_format: Any
) -> None:
    fmt = VideoFormat(pixel_format=pixel_format, max_width=max_width, max_height=max_height)
    factor = scale_factor(width, height, fmt)
    flat = np.full(_frame_bytes(width, height, pixel_format), 77, np.uint8)
    out, out_w, out_h = downscale(flat, width, height, pixel_format, factor)
    assert out.size == _frame_bytes(out_w, out_h, pixel_format)
    assert (not max_width or out_w <= max_width or width // factor == 0) and out_w >= 1
    assert (not max_height or out_h <= max_height or height // factor == 0) and out_h >= 1
    assert (out == 77).all()  # a box filter keeps a flat frame flat


def _frame_bytes(width: int, height: int, pixel_format: str) -> int:
    from framepool.processors.api import frame_bytes

    return frame_bytes(width, height, pixel_format)  # type: ignore[arg-type]


def test_the_fuzzing_budget_is_at_least_ten_thousand_cases() -> None:
    total = sum(
        test._hypothesis_internal_use_settings.max_examples
        for name, test in globals().items()
        if name.startswith("test_") and hasattr(test, "hypothesis")
    )
    assert total >= 10_000, total
