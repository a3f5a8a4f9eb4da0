"""Celery's options on signatures and apply_async: accepted, routing_key kept, typos refused.

Sends to the embedded broker and reads the queued messages; no worker needed.
"""
from __future__ import annotations

import json

import pytest
from django.test import override_settings

from djq import group
from djq.canvas import signature
from djq.exceptions import TaskOptionError
from djq.messaging.producer import reset_publishers
from djq.models import QueueMessage
from tests.testapp.tasks import add


@pytest.mark.django_db(transaction=True)
def test_celery_options_are_accepted_and_typos_are_not() -> None:
    with override_settings(DJQ_BROKER_URL="djq://default"):
        reset_publishers()
        add.apply_async((1, 2), routing_key="special", reply_to="celery-oid", exchange="special",
                        stamped_headers=["tag"], stamps={"tag": "x"}, replaced_task_nesting=0)
        # a link as a Celery worker embeds it in a chain
        as_celery_sends = {"task": add.name, "args": [1], "kwargs": {}, "subtask_type": None, "immutable": False,
                           "options": {"reply_to": "celery-oid", "routing_key": "special", "task_id": "link-2",
                                       "replaced_task_nesting": 0, "stamped_headers": None, "group_index": None}}
        signature(as_celery_sends).apply_async((2,))
        add.s(3).set(reply_to="celery-oid", queue="default").apply_async((4,))
        group(add.s(i, i) for i in range(3)).apply_async()
        rows = [(queue, json.loads(payload)) for queue, payload in
                QueueMessage.objects.order_by("id").values_list("queue", "payload")]
        reset_publishers()
    assert [queue for queue, _ in rows] == ["special", "special", "default", "default", "default", "default"]
    assert rows[1][1]["headers"]["id"] == "link-2"
    assert [message["headers"]["group_index"] for _, message in rows[3:]] == [0, 1, 2]
    assert rows[0][1]["headers"]["group_index"] is None
    with pytest.raises(TaskOptionError, match="colour"):
        add.apply_async((1, 2), colour="red")
    with pytest.raises(TaskOptionError, match="routin_key"):
        add.s(1).set(routin_key="special")


def test_a_bridge_url_celery_cannot_use_is_a_system_check_error() -> None:
    from django.core import checks

    for value, ok in (("celery://amqp://guest@localhost//", False), ("celery://", False),
                      ("celery://redis://localhost:6379/1", True), ("celery://rpc://", True)):
        with override_settings(DJQ_RESULT_BACKEND=value):
            errors = [error for error in checks.run_checks() if error.id == "djq.E002"]
        assert (not errors) == ok, (value, errors)
        if not ok:
            assert "redis://HOST:PORT/DB URL or rpc://" in errors[0].msg


@pytest.mark.django_db(transaction=True)
def test_a_signature_keeps_its_headers() -> None:
    with override_settings(DJQ_BROKER_URL="djq://default"):
        reset_publishers()
        add.s(1, 2).set(headers={"tenant": "acme"}, reply_to="celery-oid").apply_async()
        (payload,) = QueueMessage.objects.values_list("payload", flat=True)
        reset_publishers()
    assert json.loads(payload)["headers"]["tenant"] == "acme"
