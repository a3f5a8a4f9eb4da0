"""A real headless Chromium logs into the admin of a live server and looks at the control room.

Needs Playwright (``pip install 'djq[browser]'``) and Debian's ``chromium`` (or
DJQ_TEST_CHROMIUM); .ci/run installs both, and with DJQ_TEST_REQUIRE_ALL=1 a missing one
fails the test instead of skipping it. On failure the page is saved as a screenshot in
DJQ_TEST_ARTIFACTS (default: the test's tmp dir).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

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


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_admin_control_room_renders_in_a_real_browser(broker, start_worker, live_server, tmp_path: Path) -> None:
    executable = chromium()
    from playwright.sync_api import expect, sync_playwright

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

    artifacts = Path(os.environ.get("DJQ_TEST_ARTIFACTS") or tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page()
        try:
            page.goto(f"{live_server.url}/admin/login/?next=/admin/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", "secret-pw")
            page.click("input[type=submit]")
            expect(page.locator("#site-name")).to_be_visible()

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
        except Exception:
            shot = artifacts / "admin-browser-failure.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failing page: {shot}")
            raise
        finally:
            browser.close()
