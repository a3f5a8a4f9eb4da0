"""The beat admin as staff use it: add a periodic task, see its schedule in words, act on it."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.admin.sites import site
from django.test import Client, RequestFactory
from django.urls import reverse

from djq.beat import timing
from djq.models import CrontabSchedule, IntervalSchedule, PeriodicRun, PeriodicTask, QueueMessage
from tests.beat.conftest import make_task

pytestmark = pytest.mark.django_db
ADD = reverse("admin:djq_periodictask_add")
CHANGELIST = reverse("admin:djq_periodictask_changelist")


@pytest.fixture
def nightly() -> CrontabSchedule:
    return CrontabSchedule.objects.create(minute="30", hour="2", timezone="Europe/Paris")


def form_data(**overrides: Any) -> dict[str, Any]:
    data = {"name": "nightly report", "task": "tests.testapp.tasks.add", "enabled": "on", "description": "",
            "schedule": "", "start_time_0": "", "start_time_1": "", "args": "[1, 2]", "kwargs": "{}",
            "queue": "", "priority": "", "expires_0": "", "expires_1": "", "expire_seconds": ""}
    data.update(overrides)
    return data


def test_add_form_has_a_task_dropdown_and_a_schedule_picker(admin_client: Client, nightly: CrontabSchedule) -> None:
    IntervalSchedule.objects.create(every=5, period="minutes")
    html = admin_client.get(ADD).content.decode()
    assert '<select name="task"' in html
    assert '<option value="tests.testapp.tasks.add">tests.testapp.tasks.add</option>' in html
    assert '<optgroup label="Crontab">' in html and '<optgroup label="Interval">' in html
    assert f'<option value="crontab:{nightly.pk}">At 02:30, every day (Europe/Paris)</option>' in html
    assert ">every 5 minutes</option>" in html
    assert reverse("admin:djq_solarschedule_add") in html, "a link to add a schedule that is missing"


def test_adding_a_periodic_task(admin_client: Client, nightly: CrontabSchedule) -> None:
    response = admin_client.post(ADD, form_data(schedule=f"crontab:{nightly.pk}"))
    assert response.status_code == 302, response.content.decode()[:3000]
    task = PeriodicTask.objects.get(name="nightly report")
    assert (task.crontab, task.interval, task.args, task.kwargs) == (nightly, None, [1, 2], {})
    assert task.last_run_at is not None, "a new task waits for its first scheduled time"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("args", "[1, 2", "This is not valid JSON (Expecting &#x27;,&#x27; delimiter at line 1, column 6). Example: [1, &quot;two&quot;]"),
    ("args", '{"a": 1}', "This must be a list in JSON, such as [1, &quot;two&quot;]; got dict"),
    ("kwargs", "[1]", "This must be an object in JSON, such as {&quot;verbose&quot;: true}; got list"),
    ("kwargs", "{'a': 1}", "This is not valid JSON (Expecting property name enclosed in double quotes"),
])
def test_bad_json_gets_a_clear_error(admin_client: Client, nightly: CrontabSchedule, field: str, value: str,
                                     message: str) -> None:
    response = admin_client.post(ADD, form_data(schedule=f"crontab:{nightly.pk}", **{field: value}))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not PeriodicTask.objects.exists()


def test_schedule_and_task_are_required(admin_client: Client) -> None:
    response = admin_client.post(ADD, form_data(task="tests.testapp.tasks.nope"))
    html = response.content.decode()
    assert "Select a valid choice. tests.testapp.tasks.nope is not one of the available choices." in html
    assert html.count("This field is required.") == 1  # the schedule


def test_changelist_shows_schedule_in_words_next_run_and_history(admin_client: Client, nightly: CrontabSchedule) -> None:
    last = datetime(2026, 6, 1, 0, 30, tzinfo=UTC)
    make_task(name="nightly", schedule=nightly, at=last)
    PeriodicTask.objects.filter(name="nightly").update(total_run_count=41, date_changed=timing.now())
    make_task(name="off", schedule=nightly, enabled=False)
    html = admin_client.get(CHANGELIST).content.decode()
    assert "At 02:30, every day (Europe/Paris)" in html
    upcoming = PeriodicTask.objects.get(name="nightly").next_run_at()
    assert upcoming is not None and upcoming > timing.now()
    assert f"{upcoming:%Y}" in html and ">41<" in html and ">disabled<" in html


def test_enable_disable_and_run_now_actions(admin_client: Client, nightly: CrontabSchedule) -> None:
    job = make_task(name="nightly", schedule=nightly, task="tests.testapp.tasks.add", args=[4, 5])
    off = make_task(name="off", schedule=nightly, enabled=False)

    def act(action: str, *rows: PeriodicTask) -> str:
        response = admin_client.post(CHANGELIST, {"action": action, "_selected_action": [r.pk for r in rows]},
                                     follow=True)
        return response.content.decode()

    assert "1 periodic task(s) enabled" in act("enable_tasks", off)
    assert PeriodicTask.objects.get(pk=off.pk).enabled
    assert "2 periodic task(s) disabled" in act("disable_tasks", job, off)
    assert not PeriodicTask.objects.filter(enabled=True).exists()
    html = act("run_tasks_now", job)
    run = PeriodicRun.objects.get()
    assert f"Sent now: nightly ({run.task_id})" in html and run.manual
    body = json.loads(json.loads(QueueMessage.objects.get().payload)["body"])
    assert body[0] == [4, 5]


def test_saving_in_the_admin_does_not_undo_what_beat_wrote_meanwhile(admin_user: Any, nightly: CrontabSchedule) -> None:
    job = make_task(name="once", schedule=nightly, one_off=True)
    open_page = PeriodicTask.objects.get(pk=job.pk)  # what the admin page holds
    sent = timing.now() + timedelta(hours=1)
    PeriodicTask.objects.filter(pk=job.pk).update(last_run_at=sent, total_run_count=1, enabled=False)  # beat ran it
    request = RequestFactory().post("/")
    request.user = admin_user
    open_page.description = "edited"
    page_form = SimpleNamespace(changed_data=["description"])  # the page changed only the description
    site._registry[PeriodicTask].save_model(request, open_page, page_form, True)
    saved = PeriodicTask.objects.get(pk=job.pk)
    assert (saved.description, saved.enabled, saved.total_run_count) == ("edited", False, 1)
    assert timing.from_db(saved.last_run_at) == sent


def test_crontab_admin_reports_each_bad_field(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:djq_crontabschedule_add"), {
        "minute": "*/0", "hour": "25", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*",
        "timezone": "Europe/Paris"})
    html = response.content.decode()
    assert "step &#x27;0&#x27; in &#x27;*/0&#x27; must be a whole number &gt;= 1" in html
    assert "hour: 25" not in html and "25 is out of range 0-23" in html, "each message sits under its field"


def test_crontab_admin_turns_a_superscript_digit_into_a_form_error(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:djq_crontabschedule_add"), {
        "minute": "²", "hour": "2", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*",
        "timezone": "UTC"})
    assert response.status_code == 200, "a form error, not a server error"
    assert "only the digits 0-9 count" in response.content.decode()


@pytest.mark.parametrize("model", ["intervalschedule", "crontabschedule", "solarschedule", "clockedschedule",
                                   "periodicrun"])
def test_schedule_and_run_lists_open(admin_client: Client, nightly: CrontabSchedule, model: str) -> None:
    make_task(name="nightly", schedule=nightly)
    assert admin_client.get(reverse(f"admin:djq_{model}_changelist")).status_code == 200


def test_the_add_form_saves_its_own_defaults(admin_client: Client, nightly: CrontabSchedule) -> None:
    html = admin_client.get(ADD).content.decode()
    shown = dict(re.findall(r'<textarea name="(args|kwargs)"[^>]*>\s*([^<]*)</textarea>', html))
    assert shown == {"args": "[]", "kwargs": "{}"}
    response = admin_client.post(ADD, form_data(schedule=f"crontab:{nightly.pk}", **shown))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert (PeriodicTask.objects.get().args, PeriodicTask.objects.get().kwargs) == ([], {})
    assert "Last run at" not in html and "Next run" not in html, "a task not yet made has no runs to show"


def test_the_add_form_offers_add_another_popups_for_each_kind_of_schedule(admin_client: Client) -> None:
    html = admin_client.get(ADD).content.decode()
    for kind in ("interval", "crontab", "solar", "clocked"):
        link = re.search(rf'<a class="related-widget-wrapper-link add-related" id="add_id_schedule_{kind}" '
                         rf'data-popup="yes" href="([^"]+)"', html)
        assert link is not None, kind
        assert link[1] == reverse(f"admin:djq_{kind}schedule_add") + "?_to_field=id&amp;_popup=1"
        assert f'<select id="id_schedule_{kind}" data-schedule-kind="{kind}"' in html, "where the popup puts it"
    assert "djq/schedule_picker.js" in html and "admin/js/admin/RelatedObjectLookups.js" in html
    # what the popup does when it saves: Django answers with the new schedule for the opener
    response = admin_client.post(reverse("admin:djq_intervalschedule_add") + "?_to_field=id&_popup=1",
                                 {"every": "7", "period": "minutes", "_popup": "1", "_to_field": "id"})
    created = IntervalSchedule.objects.get(every=7)
    assert response.status_code == 200 and f"&quot;value&quot;: &quot;{created.pk}&quot;" in response.content.decode()


def test_the_change_page_shows_the_stored_next_run(admin_client: Client, nightly: CrontabSchedule) -> None:
    job = make_task(name="nightly", schedule=nightly)
    PeriodicTask.objects.filter(pk=job.pk).update(due_at=datetime(2031, 7, 14, 0, 30, tzinfo=UTC))
    html = admin_client.get(reverse("admin:djq_periodictask_change", args=[job.pk])).content.decode()
    assert re.search(r"Next run:</label>\s*<div class=\"readonly\">July 14, 2031", html), "the column, as stored"


def test_run_now_on_the_change_page(admin_client: Client, nightly: CrontabSchedule) -> None:
    job = make_task(name="nightly", schedule=nightly, task="tests.testapp.tasks.add", args=[4, 5])
    change = reverse("admin:djq_periodictask_change", args=[job.pk])
    button = reverse("admin:djq_periodictask_run_now", args=[job.pk])
    assert f'action="{button}"' in admin_client.get(change).content.decode()
    assert admin_client.get(button).status_code == 403, "sending takes a POST"
    response = admin_client.post(button, follow=True)
    run = PeriodicRun.objects.get()
    assert response.redirect_chain[-1][0] == change and run.manual
    assert f"Sent nightly now as task {run.task_id}. Its schedule is unchanged." in response.content.decode()
    assert PeriodicTask.objects.get(pk=job.pk).total_run_count == 0
    body = json.loads(json.loads(QueueMessage.objects.get().payload)["body"])
    assert body[0] == [4, 5]
