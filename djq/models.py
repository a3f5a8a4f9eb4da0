"""djq's database tables: task results, the embedded broker's queue, and rejected messages."""
from __future__ import annotations

from django.db import models

from . import states

STATE_CHOICES = [(s, s) for s in states.ALL_STATES]


class TaskResult(models.Model):
    """One row per task that reached a worker (or was run eagerly): its state and outcome."""

    task_id = models.CharField("task id", max_length=255, primary_key=True)
    task_name = models.CharField("task name", max_length=255, db_index=True)
    state = models.CharField(max_length=50, default=states.PENDING, db_index=True)
    args_repr = models.TextField("args", blank=True, default="")
    kwargs_repr = models.TextField("kwargs", blank=True, default="")
    #: JSON (kombu's flavour): the return value, the exception of a failure, or custom-state meta.
    result = models.TextField(null=True, blank=True)
    traceback = models.TextField(null=True, blank=True)
    worker = models.CharField(max_length=255, null=True, blank=True, db_index=True)
    queue = models.CharField(max_length=200, blank=True, default="")
    retries = models.PositiveIntegerField(default=0)
    root_id = models.CharField(max_length=255, null=True, blank=True)
    parent_id = models.CharField(max_length=255, null=True, blank=True)
    date_created = models.DateTimeField("created", auto_now_add=True, db_index=True)
    date_started = models.DateTimeField("started", null=True, blank=True)
    date_done = models.DateTimeField("done", null=True, blank=True, db_index=True)
    runtime = models.FloatField("runtime (s)", null=True, blank=True)

    class Meta:
        ordering = ["-date_created"]
        verbose_name = "task result"
        indexes = [models.Index(fields=["state", "-date_created"], name="djq_result_state_created")]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] {self.state}"


class QueueMessage(models.Model):
    """A message waiting in (or claimed from) a queue of the embedded ``djq://`` broker.

    ``visible_at`` (a Unix time) carries eta, and the visibility timeout of a claimed
    message: a consumer that dies without acking leaves a row that becomes visible again.
    Ack deletes the row.
    """

    id = models.BigAutoField(primary_key=True)
    queue = models.CharField(max_length=200)
    priority = models.SmallIntegerField(default=0)
    visible_at = models.FloatField()
    deliveries = models.PositiveIntegerField(default=0)
    payload = models.TextField()

    class Meta:
        ordering = ["-priority", "id"]
        indexes = [
            models.Index(fields=["queue", "-priority", "id"], name="djq_msg_claim"),
            models.Index(fields=["queue", "visible_at"], name="djq_msg_visible"),
        ]

    def __str__(self) -> str:
        return f"message {self.id} on {self.queue}"


class QueueBinding(models.Model):
    """A binding of the embedded broker, stored so that routing crosses processes."""

    exchange = models.CharField(max_length=200)
    routing_key = models.CharField(max_length=200, blank=True, default="")
    pattern = models.CharField(max_length=200, blank=True, default="")
    queue = models.CharField(max_length=200)

    class Meta:
        ordering = ["exchange", "queue"]
        constraints = [
            models.UniqueConstraint(fields=["exchange", "routing_key", "queue"], name="djq_binding_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange} -[{self.routing_key}]-> {self.queue}"


class RejectedMessage(models.Model):
    """A message a worker could not run (malformed, unknown task, refused content type)."""

    queue = models.CharField(max_length=200, blank=True, default="", db_index=True)
    task_name = models.CharField(max_length=255, blank=True, default="", db_index=True)
    task_id = models.CharField(max_length=255, blank=True, default="")
    reason = models.TextField()
    content_type = models.CharField(max_length=100, blank=True, default="")
    headers = models.TextField(blank=True, default="")
    body = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=255, blank=True, default="")
    date_rejected = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-date_rejected"]
        verbose_name = "rejected message"

    def __str__(self) -> str:
        return f"rejected {self.task_name or 'message'}: {self.reason[:60]}"
