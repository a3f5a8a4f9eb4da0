"""Task messages: Celery protocol v2 shape, JSON only, clear errors for bad input."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from kombu import serialization

from djq.exceptions import ContentDisallowed, EncodeError, MessageError
from djq.messaging.protocol import decode_task, encode_task

JSON = frozenset({"application/json"})


def _roundtrip(message):
    return decode_task(message.headers, message.body, message.content_type, message.content_encoding, JSON)


def test_round_trip_keeps_arguments_and_headers() -> None:
    eta = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    task_id = str(uuid.uuid4())
    message = encode_task(
        "app.add", task_id, (1, "two", [3]), {"when": eta, "amount": Decimal("1.50")},
        queue="q", eta=eta, expires=eta + timedelta(hours=1), retries=2, timelimit=(30, 20),
        parent_id="p", root_id="r", ignore_result=True, priority=7,
    )
    assert message.content_type == "application/json"
    decoded = _roundtrip(message)
    assert decoded.task_name == "app.add"
    assert decoded.task_id == task_id
    assert decoded.args == [1, "two", [3]]
    assert decoded.kwargs == {"when": eta, "amount": Decimal("1.50")}
    assert decoded.eta == eta and decoded.expires == eta + timedelta(hours=1)
    assert decoded.retries == 2 and decoded.timelimit == (30, 20)
    assert decoded.parent_id == "p" and decoded.root_id == "r" and decoded.ignore_result


def test_headers_have_protocol_v2_fields() -> None:
    message = encode_task("app.add", "id-1", (1, 2), {}, queue="default")
    for key in ("lang", "task", "id", "root_id", "parent_id", "eta", "expires", "retries",
                "timelimit", "argsrepr", "kwargsrepr", "origin", "ignore_result", "group", "shadow"):
        assert key in message.headers, key
    assert message.headers["root_id"] == "id-1"
    assert message.headers["argsrepr"] == "(1, 2)"
    args, kwargs, embed = json.loads(message.body)
    assert (args, kwargs) == ([1, 2], {})
    assert set(embed) == {"callbacks", "errbacks", "chain", "chord"}


def test_unencodable_keyword_argument_is_named() -> None:
    with pytest.raises(EncodeError, match=r"argument 'conn' \(object\) cannot be encoded"):
        encode_task("app.t", "id", (1,), {"conn": object()}, queue="q")


def test_unencodable_positional_argument_is_named() -> None:
    with pytest.raises(EncodeError, match=r"positional argument 1 \(set\)"):
        encode_task("app.t", "id", (1, {1, 2}), {}, queue="q")


def test_pickle_content_is_refused() -> None:
    content_type, encoding, body = serialization.dumps(([1], {}, {}), serializer="pickle")
    with pytest.raises(ContentDisallowed, match="not in DJQ_ACCEPT_CONTENT"):
        decode_task({"task": "t", "id": "i"}, body, content_type, encoding, JSON)


@pytest.mark.parametrize(
    ("headers", "body", "error"),
    [
        ({"id": "i"}, "[[], {}, {}]", "no 'task' header"),
        ({"task": "t"}, "[[], {}, {}]", "no 'id' header"),
        ({"task": "t", "id": "i"}, "not json", "cannot be decoded"),
        ({"task": "t", "id": "i"}, '{"task": "t", "args": []}', r"\[args, kwargs, embed\]"),
        ({"task": "t", "id": "i"}, '["x", {}, {}]', "args must be a list"),
        ({"task": "t", "id": "i"}, "[[], [], {}]", "kwargs must be an object"),
        ({"task": "t", "id": "i", "eta": "tomorrow"}, "[[], {}, {}]", "not an ISO 8601"),
        ({"task": "t", "id": "i", "retries": -1}, "[[], {}, {}]", "retries"),
        ({"task": "t", "id": "i", "timelimit": "10"}, "[[], {}, {}]", "timelimit"),
    ],
)
def test_malformed_messages_raise_message_error(headers, body, error) -> None:
    with pytest.raises(MessageError, match=error):
        decode_task(headers, body, "application/json", "utf-8", JSON)


def test_callers_may_set_the_argument_reprs_and_add_headers() -> None:
    message = encode_task("app.login", "id-1", ("s3cret",), {}, queue="q", argsrepr="('***',)",
                          kwargsrepr="{}", extra_headers={"tenant": "acme"})
    decoded = _roundtrip(message)
    assert decoded.args == ["s3cret"], "only the repr is replaced, never the arguments"
    assert (decoded.headers["argsrepr"], decoded.headers["tenant"]) == ("('***',)", "acme")


def test_extra_headers_cannot_replace_the_protocols_own() -> None:
    with pytest.raises(EncodeError, match="headers id, task are the protocol's own"):
        encode_task("app.add", "id-1", (), {}, queue="q", extra_headers={"task": "evil", "id": "x"})
