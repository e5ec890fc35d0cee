"""Data-flow TOML: one-line errors naming the key path; expressions, globs and templates compiled at load."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from framepool.dataflow import load_dataflow
from framepool.errors import ConfigError, ExitStatus
from tests.unit.test_process_line import SUPERVISOR_PACKAGES, imports_of

DATAFLOW = Path(__file__).resolve().parents[2] / "daemon" / "dataflow"


def error_of(toml: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_dataflow(tomllib.loads(toml), where="agents[0].data")
    assert caught.value.exit_code == ExitStatus.CONFIG
    text = str(caught.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[[route]]\nmatch = { kind = ["chat"] }\nto_bridges = ["b"]',
            "bad setting agents[0].data.route[0].match.kind[0] = 'chat': expected one of attributes, bytes,"
            " dtmf, metadata, packet, rpc, text",
        ),
        (
            '[[route]]\nmatch = { topic = 3 }\nto_bridges = ["b"]',
            "bad setting agents[0].data.route[0].match.topic = 3: expected `str`, got `int`",
        ),
        ('[[route]]\nto_bridge = ["b"]', "bad setting agents[0].data.route[0]: unknown key 'to_bridge'"),
        ("[[routes]]\n", "bad setting agents[0].data: unknown key 'routes'"),
        (
            '[[aggregate]]\nto_topic = "x"',
            "bad setting agents[0].data.aggregate[0]: missing required key 'name'",
        ),
        (
            '[[aggregate]]\nname = "a"\nfunction = "median"\nto_topic = "x"',
            "bad setting agents[0].data.aggregate[0].function = 'median': expected one of count, distinct,"
            " last, max, mean, min, sum",
        ),
        (
            '[[moderate]]\nblocklist = ["x"]\naction = "ban"',
            "bad setting agents[0].data.moderate[0].action = 'ban': expected one of drop, flag, mask",
        ),
        (
            '[[transform]]\nexpression = "payload.["',
            "bad setting agents[0].data.transform[0].expression = 'payload.[': not a valid JMESPath",
        ),
        (
            '[[aggregate]]\nname = "a"\nkey = "payload..x"\nto_topic = "x"',
            "bad setting agents[0].data.aggregate[0].key = 'payload..x': not a valid JMESPath expression",
        ),
        (
            '[[route]]\n[[route.to_room]]\ntopic = "chat.{user}"',
            "bad setting agents[0].data.route[0].to_room[0].topic = 'chat.{user}': a template using only",
        ),
        ("[[route]]\nname = 'r'", "bad setting agents[0].data.route[0].to_room = []: at least one of"),
        (
            '[[route]]\n[[route.to_room]]\ndestination_attribute = "lang"',
            "bad setting agents[0].data.route[0].to_room[0].destination_attribute = 'lang':"
            " destination_attribute together with destination_values or destination_value_from",
        ),
        (
            '[[route]]\n[[route.to_room]]\ndestinations = ["a"]\ndestination_attribute = "lang"\n'
            'destination_values = ["fr"]',
            "bad setting agents[0].data.route[0].to_room[0].destinations = ['a']: not both",
        ),
        (
            '[[transform]]\nnon_json = "drop"',
            "bad setting agents[0].data.transform[0].expression = '': a where",
        ),
        (
            '[[aggregate]]\nname = "a"\nfunction = "sum"\nto_topic = "x"',
            "bad setting agents[0].data.aggregate[0].value = '': an expression: sum needs values",
        ),
        (
            '[[aggregate]]\nname = "a"\nwindow = "hopping"\nsize_s = 10\nhop_s = 20\nto_topic = "x"',
            "bad setting agents[0].data.aggregate[0].hop_s = 20.0: at most size_s (10.0)",
        ),
        (
            '[[aggregate]]\nname = "a"\nwindow = "hopping"\nsize_s = 10\nhop_s = 0.001\nto_topic = "x"',
            "bad setting agents[0].data.aggregate[0].hop_s = 0.001: (size_s + lateness_s) / step ≤ 1000",
        ),
        (
            '[[aggregate]]\nname = "a"\nwindow = "global"\nto_topic = "x"',
            "bad setting agents[0].data.aggregate[0].emit = 'close': \"every\" for a global window",
        ),
        ('[[aggregate]]\nname = "a"\nsize_s = -1\nto_topic = "x"', "aggregate[0].size_s = -1.0: a positive"),
        ('[[aggregate]]\nname = "a"', "aggregate[0].to_topic = '': at least one of to_topic, attribute"),
        (
            "[[moderate]]\nblocklist = []",
            "bad setting agents[0].data.moderate[0].blocklist = []: at least one",
        ),
        ('[[moderate]]\nblocklist = ["ok", "\\u200b "]', "moderate[0].blocklist[1] = '\\u200b ': a word"),
        ('[[moderate]]\nblocklist = ["x"]\nfield = "a..b"', "moderate[0].field = 'a..b': a dotted path"),
        ('[[moderate]]\nblocklist = ["x"]\nmask_char = "**"', "moderate[0].mask_char = '**': one character"),
        ("[[transcripts]]\nto_bridges = []", "bad setting agents[0].data.transcripts[0].to_bridges = []"),
        ("[[transcripts]]\n", "bad setting agents[0].data.transcripts[0]: missing required key 'to_bridges'"),
        (
            '[[transcripts]]\nto_bridges = ["pg"]\nfinals_only = "yes"',
            "finals_only = 'yes': expected true or false",
        ),
    ],
)
def test_a_bad_table_fails_at_load_with_one_line_naming_its_key_path(toml: str, expected: str) -> None:
    text = error_of(toml)
    assert text.startswith("bad setting agents[0].data")
    assert expected in text


def test_an_empty_data_table_is_a_valid_empty_pipeline() -> None:
    compiled = load_dataflow({})
    assert compiled.empty()


def test_the_dataflow_package_stays_on_the_supervisor_side_of_the_process_line() -> None:
    worker = [
        name
        for path in DATAFLOW.rglob("*.py")
        for name in imports_of(path)
        if name.startswith("framepool.worker")
    ]
    assert not worker
    # and it needs nothing from the agent, pool or devserver: the integrator adapts the room to RoomView
    supervisor = {
        name
        for path in DATAFLOW.rglob("*.py")
        for name in imports_of(path)
        if any(
            name == p or name.startswith(p + ".") for p in SUPERVISOR_PACKAGES if p != "framepool.dataflow"
        )
    }
    assert not supervisor
