"""A real headless Chromium logs into the admin of a live server and looks at the control room.

Needs Playwright (``pip install 'djq[browser]'``) and Debian's ``chromium`` (or
DJQ_TEST_CHROMIUM); .ci/run installs both, and with DJQ_TEST_REQUIRE_ALL=1 a missing one
fails the test instead of skipping it. On failure the page is saved as a screenshot in
DJQ_TEST_ARTIFACTS (default: the test's tmp dir).
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from django.contrib.auth import get_user_model

from djq.models import IntervalSchedule, PeriodicTask, WorkerState
from tests.conftest import _skip_or_fail, wait_for
from tests.testapp.tasks import add, fail

pytestmark = pytest.mark.integration


def chromium() -> str:
    path = os.environ.get("DJQ_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        _skip_or_fail("the browser test needs Debian's chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _skip_or_fail("the browser test needs Playwright (pip install 'djq[browser]')")
    return str(path)


@contextmanager
def admin_page(live_server: Any, tmp_path: Path, shot: str, width: int | None = None) -> Iterator[Any]:
    """A headless Chromium page logged into the live server's admin (as admin/secret-pw,
    a superuser the test made); a failure saves the page as ``shot`` in DJQ_TEST_ARTIFACTS.

    Make database rows before: Playwright's sync API runs an event loop in this thread,
    where Django refuses ORM calls."""
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    artifacts = Path(os.environ.get("DJQ_TEST_ARTIFACTS") or tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(**({"viewport": {"width": width, "height": 900}} if width else {}))
        try:
            page.goto(f"{live_server.url}/admin/login/?next=/admin/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", "secret-pw")
            page.click("input[type=submit]")
            expect(page.locator("#site-name")).to_be_visible()
            yield page
        except Exception:
            path = artifacts / shot
            page.screenshot(path=str(path), full_page=True)
            print(f"screenshot of the failing page: {path}")
            raise
        finally:
            browser.close()


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_admin_control_room_renders_in_a_real_browser(broker, start_worker, live_server, tmp_path: Path) -> None:
    chromium()  # a missing browser skips here (fails in CI), before the import
    from playwright.sync_api import expect

    # Everything the database needs happens before the browser starts (Playwright's sync
    # API runs an event loop in this thread, where Django refuses ORM calls).
    get_user_model().objects.create_superuser("admin", "admin@example.com", "secret-pw")
    start_worker("-P", "threads", "-c", "2", "-n", "browser@%h")
    hostname = WorkerState.objects.get().hostname
    assert [add.delay(i, i).get(timeout=30) for i in range(5)] == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError):
        fail.delay("expected").get(timeout=30)
    every = IntervalSchedule.objects.create(every=5, period="minutes")
    PeriodicTask.objects.create(name="browser nightly", task="tests.testapp.tasks.noop", interval=every)
    wait_for(lambda: WorkerState.objects.get().processed >= 6, what="heartbeat with the counts")

    with admin_page(live_server, tmp_path, "admin-browser-failure.png") as page:

        page.goto(f"{live_server.url}/admin/djq/dashboard/")
        expect(page.locator("svg#chart-throughput")).to_be_visible()
        assert page.locator("svg#chart-throughput rect.bar-succeeded").count() == 60
        drawn = page.eval_on_selector_all(
            "svg#chart-throughput rect", "rects => rects.filter(r => r.getBBox().height > 0).map(r => r.getAttribute('class'))")
        assert "bar-succeeded" in drawn and "bar-failed" in drawn
        expect(page.locator("#figure-succeeded strong")).to_have_text("5")
        expect(page.locator("#figure-failed strong")).to_have_text("1")
        expect(page.locator("#djq-workers .djq-worker-online")).to_have_text("online")
        expect(page.locator("svg#chart-runtime")).to_be_visible()
        expect(page.locator("#djq-runtimes")).to_contain_text("tests.testapp.tasks.add")
        expect(page.locator("#djq-query-stats")).to_contain_text("queries in")

        page.goto(f"{live_server.url}/admin/djq/workerstate/")
        row = page.locator("#result_list tbody tr", has_text=hostname)
        expect(row.locator(".djq-worker-online")).to_have_text("online")
        expect(row).to_contain_text("threads")

        page.goto(f"{live_server.url}/admin/djq/taskresult/")
        expect(page.locator("#result_list .djq-state", has_text="SUCCESS").first).to_be_visible()
        expect(page.locator("#result_list .djq-state", has_text="FAILURE")).to_have_count(1)

        page.goto(f"{live_server.url}/admin/djq/periodictask/")
        expect(page.locator("#result_list")).to_contain_text("browser nightly")


def _results_and_events() -> tuple[str, str]:
    """Rows as workers and the camera write them, made here so no worker is needed."""
    from datetime import timedelta

    from django.utils import timezone

    from djq.models import TaskEvent, TaskResult

    now = timezone.now().replace(microsecond=250_000)
    task_id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    worker = "reports-worker-with-a-long-name@build-host-42.example.internal"
    TaskResult.objects.create(task_id=task_id, task_name="reports.tasks.monthly_revenue_by_region",
                              state="FAILURE", worker=worker, runtime=12.5, date_done=now,
                              args_repr="(2026, 11)", traceback="Traceback (most recent call last):\n  boom\nValueError: x")
    rows = [  # (seconds ago, event, task id, task name, host, fields)
        (40, "task-received", task_id, "reports.tasks.monthly_revenue_by_region", worker, {"args": "(2026, 11)"}),
        (30, "task-started", task_id, "reports.tasks.monthly_revenue_by_region", worker, {}),
        (20, "task-failed", task_id, "reports.tasks.monthly_revenue_by_region", worker,
         {"exception": "ValueError('x')", "traceback": "Traceback (most recent call last):\n  boom\nValueError: x"}),
        (15, "task-succeeded", "other-task", "tests.testapp.tasks.add", "other@host", {"result": "3"}),
        (5, "worker-heartbeat", "", "", worker, {"active": 0, "freq": 5.0}),
    ]
    TaskEvent.objects.bulk_create([TaskEvent(event=event, task_id=tid, task_name=name, hostname=host,
                                             timestamp=now - timedelta(seconds=ago), fields=fields)
                                   for ago, event, tid, name, host, fields in rows])
    return task_id, worker


def _finish_tasks(count: int) -> None:
    """Store finished results from another thread (Playwright's thread may not use the ORM)."""
    import threading

    from django.db import connection
    from django.utils import timezone

    from djq.models import TaskResult

    def store() -> None:
        for i in range(count):
            TaskResult.objects.create(task_id=f"refreshed-{i}", task_name="tests.testapp.tasks.add",
                                      state="SUCCESS", runtime=0.01, date_done=timezone.now())
        connection.close()

    thread = threading.Thread(target=store)
    thread.start()
    thread.join(30)


@pytest.mark.django_db(transaction=True)
def test_events_results_and_dashboard_refresh_at_1280px(live_server, tmp_path: Path) -> None:
    import re

    chromium()  # a missing browser skips here (fails in CI), before the import
    from playwright.sync_api import expect

    get_user_model().objects.create_superuser("admin", "admin@example.com", "secret-pw")
    task_id, worker = _results_and_events()
    with admin_page(live_server, tmp_path, "admin-browser-1280-failure.png", width=1280) as page:

        # Task results at 1280 px: a short id (the full one on hover), times to the second, no sideways scroll
        page.goto(f"{live_server.url}/admin/djq/taskresult/")
        short = page.locator("#result_list .djq-task-id").first
        expect(short).to_have_text(task_id[:8])
        expect(short).to_have_attribute("title", task_id)
        expect(page.locator("#result_list tbody tr").first.locator("td.field-done")).to_have_text(
            re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        assert page.evaluate("(el => el.scrollWidth <= el.clientWidth)(document.querySelector('#changelist .results'))")
        done = page.locator("#result_list th.column-done").bounding_box()
        assert done is not None and done["x"] + done["width"] <= 1280
        box = short.bounding_box()
        assert box is not None and box["height"] < 25  # one line (the full id wrapped to four)
        short.click()  # the result's page: the full id, times to the millisecond
        expect(page.locator(".field-task_id .readonly")).to_have_text(task_id)
        expect(page.locator(".field-done_at .readonly")).to_have_text(
            re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.250$"))

        # Task events: newest first, heartbeats hidden until asked for, named task events
        page.goto(f"{live_server.url}/admin/djq/taskevent/")
        events = page.locator("#result_list tbody tr td.field-event")
        expect(events).to_have_text(["task-succeeded", "task-failed", "task-started", "task-received"])
        expect(page.locator("#result_list tbody td.field-task_name", has_text="monthly_revenue")).to_have_count(3)
        expect(page.locator("#result_list tbody th.field-when").first).to_have_text(
            re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
        page.locator("#changelist-filter a", has_text="everything, with heartbeats").click()
        expect(events.first).to_have_text("worker-heartbeat")
        page.goto(f"{live_server.url}/admin/djq/taskevent/?hostname={worker}")
        expect(events).to_have_text(["task-failed", "task-started", "task-received"])
        page.goto(f"{live_server.url}/admin/djq/taskevent/?task_name=tests.testapp.tasks.add")
        expect(events).to_have_text(["task-succeeded"])
        page.goto(f"{live_server.url}/admin/djq/taskevent/?event=task-started")
        expect(events).to_have_text(["task-started"])
        page.goto(f"{live_server.url}/admin/djq/taskevent/?timestamp__gte=2000-01-01+00:00:00%2B00:00"
                  "&timestamp__lt=2000-01-02+00:00:00%2B00:00")
        expect(events).to_have_count(0)

        # An event's page: milliseconds, and the traceback as lines, not one string of "\n"
        page.goto(f"{live_server.url}/admin/djq/taskevent/?event=task-failed")
        page.locator("#result_list tbody th.field-when a").first.click()
        expect(page.locator(".field-when_precise .readonly")).to_have_text(
            re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.250$"))
        traceback = page.locator(".djq-event-fields tr", has_text="traceback").locator("pre")
        lines = traceback.inner_text().splitlines()
        assert lines == ["Traceback (most recent call last):", "  boom", "ValueError: x"], lines

        # The dashboard refreshes its figures in place: the page's own state survives
        page.goto(f"{live_server.url}/admin/djq/dashboard/?refresh=1")
        expect(page.locator("#figure-succeeded strong")).to_have_text("0")
        page.evaluate("window.djqStillHere = 'yes'")
        _finish_tasks(3)
        expect(page.locator("#figure-succeeded strong")).to_have_text("3", timeout=15_000)
        assert page.evaluate("window.djqStillHere") == "yes"  # no reload happened
        expect(page.locator("#djq-refreshes")).not_to_have_text("0")

        # ... and without JavaScript it still shows its figures and reloads itself
        context = page.context.browser.new_context(java_script_enabled=False, storage_state=page.context.storage_state())
        plain = context.new_page()
        plain.goto(f"{live_server.url}/admin/djq/dashboard/")
        expect(plain.locator("#figure-succeeded strong")).to_have_text("3")
        assert plain.locator("meta[http-equiv=refresh]").count() == 1
        context.close()
