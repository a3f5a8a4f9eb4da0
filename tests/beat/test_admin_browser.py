"""The periodic task form in a real headless Chromium: a schedule added through the "+" popup
lands in the picker, chosen, and the task saves with it. Skips like tests/test_browser.py."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from djq.models import PeriodicTask
from tests.test_browser import chromium

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_schedule_added_in_the_popup_is_chosen_in_the_picker(live_server) -> None:
    executable = chromium()
    from playwright.sync_api import expect, sync_playwright

    get_user_model().objects.create_superuser("admin", "admin@example.com", "secret-pw")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page()
        try:
            page.goto(f"{live_server.url}/admin/login/?next=/admin/djq/periodictask/add/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", "secret-pw")
            page.click("input[type=submit]")
            expect(page.locator("#id_args")).to_have_value("[]")
            with page.expect_popup() as opened:
                page.click("#add_id_schedule_crontab")
            popup = opened.value
            popup.fill("#id_minute", "15")
            popup.fill("#id_hour", "4")
            popup.fill("#id_timezone", "UTC")
            with popup.expect_event("close"):
                popup.click("input[name=_save]")
            # the popup names the new schedule as its admin does; after a reload it reads in words
            expect(page.locator("#id_schedule option:checked")).to_have_text("15 4 * * * (UTC)")
            assert page.eval_on_selector("#id_schedule", "picker => picker.value").startswith("crontab:")
            page.fill("#id_name", "from the popup")
            page.select_option("#id_task", "tests.testapp.tasks.noop")
            page.click("input[name=_save]")
            expect(page.locator(".messagelist")).to_contain_text("was added successfully")
        finally:
            browser.close()
    task = PeriodicTask.objects.get(name="from the popup")
    assert task.crontab is not None and (task.crontab.minute, task.crontab.hour) == ("15", "4")
