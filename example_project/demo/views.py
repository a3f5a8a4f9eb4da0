"""The demo's home page: buttons that send sample tasks, and the latest results."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from djq.models import QueueMessage, TaskResult

from .samples import BUTTONS


@require_http_methods(["GET", "HEAD"])
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/home.html", {
        "buttons": BUTTONS,
        "results": TaskResult.objects.only(
            "task_id", "task_name", "state", "worker", "runtime", "date_created"
        )[:10],
        "waiting": QueueMessage.objects.count(),
    })


@require_POST
def send(request: HttpRequest, name: str) -> HttpResponse:
    sample = BUTTONS.get(name)
    if sample is None:
        messages.error(request, f"There is no sample task called {name!r}.")
    else:
        task_id = sample.send()
        messages.success(request, f"Sent {sample} as task {task_id}.")
    # Redirect after POST, so reloading the page does not send the task again.
    return redirect("demo:home")
