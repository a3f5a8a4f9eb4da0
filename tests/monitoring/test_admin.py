"""The admin as control room: dashboard, workers, timeline and actions, as staff see them."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from djq import states
from djq.dashboard import collect, percentile
from djq.models import TaskEvent, TaskResult, WorkerState
from tests.conftest import wait_for
from tests.testapp.tasks import add, sleep_then_add

SCRIPT = "<script>alert('x')</script>"
DASHBOARD = "admin:djq_dashboard_changelist"


def _result(task_id: str, state: str, minutes_ago: float, runtime: float, name: str = "app.add", **extra) -> TaskResult:
    done = timezone.now() - timedelta(minutes=minutes_ago)
    return TaskResult.objects.create(task_id=task_id, task_name=name, state=state, runtime=runtime,
                                     date_done=done, **extra)


def _worker(hostname: str, online: bool = True) -> WorkerState:
    now = timezone.now()
    return WorkerState.objects.create(hostname=hostname, pid=42, pool="threads", concurrency=4, queues=["default"],
                                      last_heartbeat=now - timedelta(seconds=1 if online else 600),
                                      offline_after=now + timedelta(seconds=9 if online else -590), processed=17)


def _staff(*perms: str) -> Client:
    user = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="djq"))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_dashboard_shows_rates_runtimes_queues_and_workers(admin_client: Client) -> None:
    for i in range(6):
        _result(f"ok-{i}", states.SUCCESS, minutes_ago=2, runtime=0.1 * (i + 1))
    _result("bad-1", states.FAILURE, minutes_ago=2, runtime=2.0, name=SCRIPT)
    _result("old", states.SUCCESS, minutes_ago=600, runtime=99.0)  # outside the hour
    _worker("alive@h")
    _worker("dead@h", online=False)
    page = admin_client.get(reverse(DASHBOARD)).content.decode()
    assert 'id="chart-throughput"' in page and 'http-equiv="refresh"' in page
    assert len(re.findall(r'class="bar-failed"', page)) == 60
    assert re.search(r'id="figure-succeeded"><strong>6<', page)
    assert re.search(r'id="figure-failed"><strong>1<', page)
    assert re.search(r'id="figure-workers"><strong>1<', page)
    assert "alive@h" in page and "dead@h" not in page and "djq-worker-online" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page and SCRIPT not in page
    assert re.search(r"queries in [\d.]+ ms", page)
    assert "https://" not in page.split('id="djq-board"', 1)[1]  # no CDN: charts are inline SVG

    board = collect()
    assert board.succeeded == 6 and board.failed == 1
    assert ("app.add", 6, 0.3, 0.6) == tuple(round(v, 3) if isinstance(v, float) else v for v in board.runtimes[1])
    assert dict(board.queues)["default"] == 0


def test_percentile_nearest_rank() -> None:
    assert percentile([5.0], 95) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 50) == 50.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0


@pytest.mark.django_db
def test_pages_escape_task_arguments_and_results(admin_client: Client) -> None:
    row = _result("evil", states.SUCCESS, 1, 0.1, args_repr=f"({SCRIPT!r},)", result=json.dumps(SCRIPT))
    TaskEvent.objects.create(event="task-received", task_id=row.task_id, timestamp=timezone.now(),
                             hostname="w@h", fields={"args": SCRIPT})
    for url in (reverse("admin:djq_taskresult_changelist"), reverse("admin:djq_taskevent_changelist"),
                reverse("admin:djq_taskevent_change", args=[TaskEvent.objects.get().pk])):
        assert "<script>alert" not in admin_client.get(url).content.decode()
    detail = admin_client.get(reverse("admin:djq_taskresult_change", args=["evil"])).content.decode()
    assert "<script>alert" not in detail
    assert "(&quot;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;,)" in detail  # the args, as text
    assert 'class="djq-timeline"' in detail and "task-received" in detail
    assert "args=&lt;script&gt;" in detail


@pytest.mark.django_db
def test_workers_page_and_permissions() -> None:
    _worker("alive@h")
    _worker("dead@h", online=False)
    viewer = _staff("view_workerstate", "view_taskresult")
    page = viewer.get(reverse("admin:djq_workerstate_changelist")).content.decode()
    assert "djq-worker-online" in page and "djq-worker-offline" in page
    assert re.search(r">\d+s ago<", page) and "10 min ago" in page  # heartbeat ages, alive and dead
    assert 'value="shutdown"' not in page  # actions need the change permission
    pk = str(WorkerState.objects.get(hostname="alive@h").pk)
    response = viewer.post(reverse("admin:djq_workerstate_changelist"), {"action": "shutdown", "_selected_action": [pk]})
    assert response.status_code == 200 and "shutting down" not in response.content.decode()
    assert viewer.get(reverse(DASHBOARD)).status_code == 200
    assert _other_staff().get(reverse(DASHBOARD)).status_code == 403
    anonymous = Client().get(reverse(DASHBOARD))
    assert anonymous.status_code == 302 and "/login/" in anonymous.url


def _other_staff() -> Client:
    user = get_user_model().objects.create_user("nobody", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.integration
# every broker, with results in the database the admin reads (the postgres leg keeps them elsewhere)
@pytest.mark.parametrize("db_alias", ["default", "redis", "amqp"], indirect=True)
def test_admin_actions_act_on_real_workers(broker, start_worker) -> None:
    worker = start_worker("-P", "threads", "-c", "1", "-n", "admin@%h")
    hostname = WorkerState.objects.using(broker).get().hostname
    user = get_user_model().objects.db_manager(broker).create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)

    assert add.delay(2, 3).get(timeout=30) == 5
    original = TaskResult.objects.using(broker).get(task_name="tests.testapp.tasks.add")
    page = client.get(reverse("admin:djq_taskresult_change", args=[original.task_id])).content.decode()
    assert 'class="historylink djq-retry"' in page and 'class="historylink djq-revoke"' in page
    response = client.post(reverse("admin:djq_taskresult_act", args=[original.task_id, "retry"]), follow=True)
    assert "Sent 1 task(s) again" in response.content.decode()  # the change page's Retry button
    assert response.redirect_chain[-1][0] == reverse("admin:djq_taskresult_change", args=[original.task_id])
    wait_for(lambda: TaskResult.objects.using(broker).filter(task_name="tests.testapp.tasks.add",
                                                             state=states.SUCCESS).count() == 2, what="retried task")

    blocker = sleep_then_add.delay(1.0, 0, 0)  # keeps the single slot busy
    waiting = add.apply_async((7, 7), countdown=0.5)
    # visible from the moment it is sent: PENDING, with its eta, its queue and its arguments
    row = TaskResult.objects.using(broker).get(task_id=waiting.id)
    assert (row.state, row.queue, row.args_repr) == (states.PENDING, "default", "(7, 7)")
    assert row.eta is not None and abs((row.eta - row.date_created).total_seconds() - 0.5) < 0.25
    unconsumed = add.apply_many([(1, 1), (2, 2)], queue="nobody-consumes")
    assert TaskResult.objects.using(broker).filter(task_id__in=[r.id for r in unconsumed],
                                                   state=states.PENDING, queue="nobody-consumes").count() == 2
    # ... and loud on the dashboard: broker-side count, oldest age, flagged red (nobody consumes it)
    page = client.get(reverse(DASHBOARD)).content.decode()
    flagged = re.search(r'<tr class="djq-unconsumed"[^>]*><td>nobody-consumes</td><td>(\d+)</td><td>(\d+) s</td>'
                        r'<td><strong>no worker consumes this queue</strong>', page)
    assert flagged and flagged.group(1) == "2", page
    assert re.search(rf'<tr class=""><td>default</td><td>\d+</td><td>[^<]*</td><td>{re.escape(hostname)}</td>', page)
    response = client.post(reverse("admin:djq_taskresult_changelist"),
                           {"action": "revoke", "_selected_action": [waiting.id]}, follow=True)
    assert f"1 worker(s) confirmed: {hostname}" in response.content.decode()
    assert blocker.get(timeout=30) == 0
    wait_for(lambda: TaskResult.objects.using(broker).get(task_id=waiting.id).state == states.REVOKED,
             what="revoked")

    # a running task on threads: the revoke says it was not stopped; the revoked list, that it ran on
    running = sleep_then_add.delay(4.0, 1, 1)
    wait_for(lambda: TaskResult.objects.using(broker).get(task_id=running.id).state == states.STARTED,
             what="the task to start")
    response = client.post(reverse("admin:djq_taskresult_act", args=[running.id, "revoke"]), follow=True)
    said = [str(message) for message in response.context["messages"]]
    assert (f"{running.id} already running on {hostname}: not stopped, it runs to its end "
            "(the threads pool cannot stop a running task)") in said, said
    assert running.get(timeout=30) == 2
    assert f"task tests.testapp.tasks.sleep_then_add[{running.id}] revoked while it runs" in worker.output
    listing = client.get(reverse("admin:djq_revokedtask_changelist")).content.decode()
    assert "ran to the end (SUCCESS)" in listing and '<td class="field-outcome">revoked</td>' in listing

    response = client.post(reverse("admin:djq_workerstate_changelist"),
                           {"action": "grow", "_selected_action": [str(WorkerState.objects.using(broker).get().pk)]},
                           follow=True)
    assert f"Worker {hostname}: pool will grow to 2" in response.content.decode()
    response = client.post(reverse("admin:djq_workerstate_changelist"),
                           {"action": "shutdown", "_selected_action": [str(WorkerState.objects.using(broker).get().pk)]},
                           follow=True)
    assert f"Worker {hostname}: shutting down" in response.content.decode()
    assert worker.wait(timeout=30) == 0
    assert not WorkerState.objects.using(broker).get().online
