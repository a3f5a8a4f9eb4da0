"""The admin pages for task results, rejected messages and queued messages, as staff see them."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from djq import states
from djq.models import QueueMessage, RejectedMessage, TaskResult

pytestmark = pytest.mark.django_db

TRACEBACK = 'Traceback (most recent call last):\n  File "tasks.py", line 3, in fail\nValueError: boom'


@pytest.fixture
def results() -> dict[str, TaskResult]:
    now = timezone.now()
    rows = {
        "ok": TaskResult(task_id="id-ok", task_name="app.add", state=states.SUCCESS, args_repr="(2, 3)",
                         kwargs_repr="{}", result=json.dumps({"total": 5, "parts": [2, 3]}), worker="djq@a",
                         runtime=0.25, date_done=now),
        "bad": TaskResult(task_id="id-bad", task_name="app.fail", state=states.FAILURE, args_repr="('boom',)",
                          result=json.dumps({"exc_type": "ValueError", "exc_module": "builtins",
                                             "exc_message": "boom", "exc_args": ["boom"]}),
                          traceback=TRACEBACK, worker="djq@b", runtime=75.0, date_done=now),
        "running": TaskResult(task_id="id-running", task_name="app.slow", state=states.STARTED, worker="djq@a",
                              date_started=now - timedelta(seconds=3)),
        "retry": TaskResult(task_id="id-retry", task_name="app.flaky", state=states.RETRY, retries=1),
        "revoked": TaskResult(task_id="id-revoked", task_name="app.slow", state=states.REVOKED, date_done=now),
        "pending": TaskResult(task_id="id-pending", task_name="app.add", state=states.PENDING),
        "raw": TaskResult(task_id="id-raw", task_name="app.add", state=states.SUCCESS, result="not json {"),
    }
    for row in rows.values():
        row.save()
    return rows


def changelist(model: str) -> str:
    return reverse(f"admin:djq_{model}_changelist")


def change(model: str, pk: object) -> str:
    return reverse(f"admin:djq_{model}_change", args=[pk])


def test_result_list_shows_every_state_as_a_coloured_badge(admin_client: Client, results: dict[str, TaskResult]) -> None:
    response = admin_client.get(changelist("taskresult"))
    assert response.status_code == 200
    html = response.content.decode()
    for state, colour in [("SUCCESS", "#2e7d32"), ("FAILURE", "#c62828"), ("STARTED", "#1565c0"),
                          ("RETRY", "#ef6c00"), ("REVOKED", "#616161"), ("PENDING", "#e0e0e0")]:
        assert f"background: {colour}; color:" in html
        assert f">{state}</span>" in html
    assert "0.250 s" in html  # runtime under a second
    assert "1m 15s" in html  # runtime over a minute
    assert "djq@b" in html


def test_result_list_filters_by_state(admin_client: Client, results: dict[str, TaskResult]) -> None:
    html = admin_client.get(changelist("taskresult"), {"state__exact": "FAILURE"}).content.decode()
    assert "id-bad" in html
    for other in ("id-ok", "id-running", "id-retry", "id-revoked", "id-pending"):
        assert other not in html


def test_result_list_filters_by_task_name_and_searches(admin_client: Client, results: dict[str, TaskResult]) -> None:
    html = admin_client.get(changelist("taskresult"), {"task_name": "app.slow"}).content.decode()
    assert "id-running" in html and "id-revoked" in html and "id-ok" not in html
    html = admin_client.get(changelist("taskresult"), {"q": "id-retry"}).content.decode()
    assert "id-retry" in html and "id-bad" not in html


def test_result_page_pretty_prints_result_and_traceback(admin_client: Client, results: dict[str, TaskResult]) -> None:
    response = admin_client.get(change("taskresult", "id-bad"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<pre" in html
    assert '  &quot;exc_type&quot;: &quot;ValueError&quot;,\n' in html  # indented JSON, escaped
    assert "ValueError: boom" in html
    assert "File &quot;tasks.py&quot;, line 3" in html
    assert "(&#x27;boom&#x27;,)" in html  # args repr


def test_result_page_shows_text_that_is_not_json_as_is(admin_client: Client, results: dict[str, TaskResult]) -> None:
    html = admin_client.get(change("taskresult", "id-raw")).content.decode()
    assert "not json {" in html


def test_result_page_is_read_only(admin_client: Client, results: dict[str, TaskResult]) -> None:
    html = admin_client.get(change("taskresult", "id-ok")).content.decode()
    assert 'name="_save"' not in html
    assert '<input type="text" name="task_name"' not in html
    response = admin_client.post(change("taskresult", "id-ok"), {"task_name": "hacked", "state": "FAILURE"})
    assert response.status_code == 403
    row = TaskResult.objects.get(task_id="id-ok")
    assert (row.task_name, row.state) == ("app.add", states.SUCCESS)


def test_results_cannot_be_added(admin_client: Client) -> None:
    assert admin_client.get(reverse("admin:djq_taskresult_add")).status_code == 403
    assert admin_client.post(reverse("admin:djq_taskresult_add"), {"task_id": "x", "task_name": "y"}).status_code == 403
    assert not TaskResult.objects.exists()


def test_non_staff_users_are_sent_to_login(client: Client, results: dict[str, TaskResult]) -> None:
    user = get_user_model().objects.create_user("visitor", password="pw", is_staff=False)
    client.force_login(user)
    for url in (changelist("taskresult"), change("taskresult", "id-ok"), changelist("queuemessage"),
                changelist("rejectedmessage")):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_rejected_messages_list_and_detail(admin_client: Client) -> None:
    rejected = RejectedMessage.objects.create(
        queue="default", task_name="app.gone", task_id="id-gone", worker="djq@a",
        reason="unknown task app.gone: no task of that name is registered on this worker " * 3,
        content_type="application/json", headers=json.dumps({"task": "app.gone", "id": "id-gone"}),
        body=json.dumps([[1], {}, {}]),
    )
    html = admin_client.get(changelist("rejectedmessage")).content.decode()
    assert "id-gone" in html
    assert "unknown task app.gone: no task of that name is registered on this worker unknow…" in html
    html = admin_client.get(changelist("rejectedmessage"), {"queue": "other"}).content.decode()
    assert "id-gone" not in html
    html = admin_client.get(change("rejectedmessage", rejected.pk)).content.decode()
    assert '  &quot;task&quot;: &quot;app.gone&quot;,\n' in html
    response = admin_client.post(change("rejectedmessage", rejected.pk), {"reason": "edited"})
    assert response.status_code == 403
    assert RejectedMessage.objects.get(pk=rejected.pk).reason.startswith("unknown task")
    assert admin_client.get(reverse("admin:djq_rejectedmessage_add")).status_code == 403


def _payload(task: str, task_id: str) -> str:
    body = json.dumps([[2, 3], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    return json.dumps({"body": body, "headers": {"task": task, "id": task_id}, "content-type": "application/json",
                       "properties": {"priority": 0}})


def test_queue_messages_are_listed_with_their_task(admin_client: Client) -> None:
    now = time.time()
    waiting = QueueMessage.objects.create(queue="default", visible_at=now - 1, payload=_payload("app.add", "id-q1"))
    QueueMessage.objects.create(queue="emails", visible_at=now + 3600, payload=_payload("app.mail", "id-q2"))
    QueueMessage.objects.create(queue="default", visible_at=now, payload="{broken")
    response = admin_client.get(changelist("queuemessage"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "app.add" in html and "id-q1" in html and "app.mail" in html
    assert "waiting" in html and "scheduled (eta)" in html
    html = admin_client.get(changelist("queuemessage"), {"queue": "emails"}).content.decode()
    assert "app.mail" in html and "app.add" not in html
    html = admin_client.get(change("queuemessage", waiting.pk)).content.decode()
    assert '&quot;task&quot;: &quot;app.add&quot;' in html
    assert admin_client.get(reverse("admin:djq_queuemessage_add")).status_code == 403
    assert admin_client.post(change("queuemessage", waiting.pk), {"queue": "x"}).status_code == 403
    assert admin_client.get(reverse("admin:djq_queuemessage_delete", args=[waiting.pk])).status_code == 403
    assert QueueMessage.objects.get(pk=waiting.pk).queue == "default"
