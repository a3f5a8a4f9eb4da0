"""The result change page's Retry and Revoke buttons, and the dashboard's unconsumed-queue
flag, in headless Chromium (see tests/test_browser.py for what it needs)."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from djq import states
from djq.models import RevokedTask, TaskResult
from tests.test_browser import admin_page, chromium
from tests.testapp.tasks import add

pytestmark = pytest.mark.integration


@pytest.mark.django_db(transaction=True)
def test_change_page_buttons_and_the_unconsumed_flag(live_server, tmp_path: Path) -> None:
    chromium()  # a missing browser skips here (fails in CI), before the import
    from playwright.sync_api import expect

    get_user_model().objects.create_superuser("admin", "admin@example.com", "secret-pw")
    waiting = add.apply_async((1, 2), queue="nobody-consumes")  # no worker: stays PENDING
    done = TaskResult.objects.create(task_id="done-1", task_name="tests.testapp.tasks.add", state=states.SUCCESS,
                                     args_repr="(2, 3)", kwargs_repr="{}")
    with admin_page(live_server, tmp_path, "results-browser-failure.png", width=1280) as page:

        page.goto(f"{live_server.url}/admin/djq/taskresult/{waiting.id}/change/")
        expect(page.locator(".field-eta, .field-state_badge").first).to_be_visible()
        page.click("button.djq-revoke")
        expect(page.locator(".messagelist")).to_contain_text("Revoked 1 task(s)")
        assert page.url.endswith(f"/admin/djq/taskresult/{waiting.id}/change/")

        page.goto(f"{live_server.url}/admin/djq/taskresult/{done.task_id}/change/")
        page.click("button.djq-retry")
        expect(page.locator(".messagelist")).to_contain_text("Sent 1 task(s) again")
        assert page.url.endswith(f"/admin/djq/taskresult/{done.task_id}/change/")

        page.goto(f"{live_server.url}/admin/djq/dashboard/")
        # no worker is online: both queues with messages (the retry's went to default) are red
        expect(page.locator("#djq-queues tr.djq-unconsumed")).to_have_count(2)
        flagged = page.locator("#djq-queues tr.djq-unconsumed", has_text="nobody-consumes")
        expect(flagged).to_contain_text("no worker consumes this queue")
        assert flagged.evaluate("row => getComputedStyle(row).backgroundColor") == "rgb(253, 236, 234)"
    assert RevokedTask.objects.filter(task_id=waiting.id).exists()
    # the retry sent a new task: visible at once as PENDING beside the waiting one
    assert TaskResult.objects.filter(state=states.PENDING, task_name="tests.testapp.tasks.add").count() == 2
