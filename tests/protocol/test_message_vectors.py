"""The hand-written validator (`microadjust.protocol`) and the JSON Schemas agree on every vector.

`protocol/vectors/messages/` is shared with the JavaScript tests; a vector that one side accepts
and the other refuses, or that they blame on different fields, is a protocol bug.
"""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from microadjust import protocol

from .schemas import SCHEMAS, error_paths, validator, vectors

VALID = vectors("valid")
INVALID = vectors("invalid")


def _validate_by_hand(schema: str, message):
    """The server's check for a vector: the parsed message (Batch for events and beacons)."""
    if schema == "beacon":
        return protocol.validate_beacon(message).batch
    return protocol.validate_client_message(message)[1]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_schema_is_valid_draft_2020_12(name):
    Draft202012Validator.check_schema(SCHEMAS[name])


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector_matches_its_schema(vector):
    errors = list(validator(vector["schema"]).iter_errors(vector["message"]))
    assert errors == [], [e.message for e in errors]


@pytest.mark.parametrize(
    "vector", [v for v in VALID if v["schema"] != "server-message"], ids=lambda v: v["name"]
)
def test_valid_client_vector_is_accepted_by_the_server(vector):
    batch = _validate_by_hand(vector["schema"], vector["message"])
    if isinstance(batch, protocol.Batch):
        assert [path for path, _ in batch.unknown] == vector.get("unknown_events", [])
        assert batch.last == batch.seq + len(vector["message"]["events"]) - 1
        assert len(batch.events) == len(vector["message"]["events"]) - len(batch.unknown)


SERVER_INVALID = [v for v in INVALID if v["schema"] == "server-message"]
CLIENT_INVALID = [v for v in INVALID if v["schema"] != "server-message"]


@pytest.mark.parametrize("vector", SERVER_INVALID, ids=[v["name"] for v in SERVER_INVALID])
def test_invalid_server_message_is_refused_by_the_schema_at_its_path(vector):
    errors = list(validator(vector["schema"]).iter_errors(vector["message"]))
    assert errors, "the JSON Schema accepts a server message the protocol forbids"
    assert vector["path"] in error_paths(errors)


def test_the_welcome_vectors_cover_resume():
    """§2.3: a fresh welcome, a complete and an incomplete resume are all in the shared vectors."""
    welcomes = [v["message"] for v in VALID if v["message"].get("t") == "welcome"]
    assert any("resume" not in w for w in welcomes)
    assert {w["resume"]["complete"] for w in welcomes if "resume" in w} == {True, False}


@pytest.mark.parametrize("vector", CLIENT_INVALID, ids=[v["name"] for v in CLIENT_INVALID])
def test_invalid_vector_is_refused_by_both_with_the_same_path(vector):
    with pytest.raises(protocol.ProtocolError) as caught:
        message = protocol.decode(vector["frame"]) if "frame" in vector else vector["message"]
        _validate_by_hand(vector["schema"], message)
    assert caught.value.code == vector["code"]
    assert caught.value.path == vector["path"]
    assert caught.value.detail.startswith(vector["path"])
    if "frame" in vector:
        return  # not JSON: there is nothing for a schema to judge
    errors = list(validator(vector["schema"]).iter_errors(vector["message"]))
    assert errors, "the JSON Schema accepts a message the server refuses"
    assert vector["path"] in error_paths(errors)


def test_error_detail_names_the_path_and_the_expectation():
    msg = {"t": "events", "seq": 1, "events": [{"k": "click", "ts": 1}] * 3 + [{"k": "hover", "ts": 1, "dur": -1, "phase": "end"}]}
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.validate_client_message(msg)
    assert caught.value.detail == "events[3].dur: expected integer >= 0"


def test_unknown_fields_are_ignored_and_not_passed_on():
    t, batch = protocol.validate_client_message(
        {"t": "events", "seq": 5, "x": 1, "events": [{"k": "click", "ts": 9, "item": "p1", "secret": "typed text"}]})
    assert batch.events == [{"k": "click", "ts": 9, "item": "p1", "seq": 5}]


def test_unknown_event_kind_keeps_its_sequence_number_slot():
    _, batch = protocol.validate_client_message(
        {"t": "events", "seq": 10, "events": [{"k": "gaze", "ts": 1}, {"k": "click", "ts": 2}]})
    assert batch.unknown == [("events[0].k", "gaze")]
    assert [e["seq"] for e in batch.events] == [11]
    assert batch.last == 11


def test_batch_limit_comes_from_the_caller():
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.validate_client_message({"t": "events", "seq": 1, "events": [{"k": "click", "ts": 1}] * 3}, max_batch=2)
    assert caught.value.detail == "events: expected array of 1..2 events"
