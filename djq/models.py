"""djq's database tables: task results, worker state and events, the embedded broker's
queue, rejected messages, revokes and workflow counters. Beat's tables are in
djq/beat/models.py (imported here, so Django finds them in the djq app)."""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from . import states
from .beat.models import (  # noqa: F401  (the djq app's models: Django finds them here)
    SCHEDULE_FIELDS, ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicRun, PeriodicTask, SolarSchedule,
)

STATE_CHOICES = [(s, s) for s in states.ALL_STATES]


class TaskResult(models.Model):
    """One row per task, from the moment it is sent (PENDING, with its eta: djq/pending.py):
    its state and outcome."""

    task_id = models.CharField("task id", max_length=255, primary_key=True)
    task_name = models.CharField("task name", max_length=255)
    state = models.CharField(max_length=50, default=states.PENDING)
    args_repr = models.TextField("args", blank=True, default="")
    kwargs_repr = models.TextField("kwargs", blank=True, default="")
    #: JSON (kombu's flavour): the return value, the exception of a failure, or custom-state meta.
    result = models.TextField(null=True, blank=True)
    traceback = models.TextField(null=True, blank=True)
    worker = models.CharField(max_length=255, null=True, blank=True)
    queue = models.CharField(max_length=200, blank=True, default="")
    retries = models.PositiveIntegerField(default=0)
    root_id = models.CharField(max_length=255, null=True, blank=True)
    parent_id = models.CharField(max_length=255, null=True, blank=True)
    date_created = models.DateTimeField("created", auto_now_add=True, db_index=True)
    date_started = models.DateTimeField("started", null=True, blank=True)
    date_done = models.DateTimeField("done", null=True, blank=True)
    runtime = models.FloatField("runtime (s)", null=True, blank=True)
    #: When the task is due (its eta or countdown), as sent; empty for "as soon as possible".
    eta = models.DateTimeField("eta", null=True, blank=True)
    #: Which delivery of the task wrote this row: the worker's clock (µs) when that delivery
    #: arrived; 0 for writes from outside a worker. With ``retries`` it orders the writes,
    #: so a late or wrong write never moves a state backwards (backends/conditional.py).
    attempt = models.BigIntegerField(default=0, editable=False)
    #: The running task is acked late: if its worker is lost, the broker delivers it again.
    acks_late = models.BooleanField("acks late", default=False, editable=False)

    class Meta:
        ordering = ["-date_created"]
        verbose_name = "task result"
        # Every state a task passes through rewrites its row in each of these indexes (a
        # changed state is never a HOT update): only what a query needs. State alone and
        # date_done alone are the first columns of the two composite ones; no LIKE
        # (varchar_pattern_ops) copies, which db_index adds on PostgreSQL (the admin
        # searches with icontains, which cannot use them).
        indexes = [
            models.Index(fields=["task_name"], name="djq_result_task_name"),
            # the orphan sweep: the rows of a lost worker
            models.Index(fields=["worker"], name="djq_result_worker"),
            models.Index(fields=["state", "-date_created"], name="djq_result_state_created"),
            # the dashboard: finished tasks of the last hour, by state, name and runtime
            models.Index(fields=["date_done", "state", "task_name", "runtime"], name="djq_result_done"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] {self.state}"


class Dashboard(TaskResult):
    """The admin's dashboard page (a proxy: no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"


class WorkerState(models.Model):
    """One row per worker hostname, written by the worker's heartbeat.

    A worker is online while ``stopped`` is empty and ``offline_after`` (the last heartbeat
    plus two intervals) lies ahead; a worker killed without a warm shutdown goes offline
    when its heartbeats stop.
    """

    hostname = models.CharField(max_length=255, unique=True)
    pid = models.PositiveIntegerField(default=0)
    pool = models.CharField(max_length=20, blank=True, default="")
    concurrency = models.PositiveIntegerField(default=0)
    queues = models.JSONField(default=list, blank=True)
    version = models.CharField(max_length=40, blank=True, default="")
    started = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now, db_index=True)
    heartbeat_interval = models.FloatField(default=5.0)
    offline_after = models.DateTimeField(default=timezone.now, db_index=True)
    stopped = models.DateTimeField(null=True, blank=True)
    processed = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveBigIntegerField(default=0)
    active = models.PositiveIntegerField(default=0)
    #: The machine the worker runs on (its process id means something only there).
    machine = models.CharField(max_length=255, blank=True, default="")
    #: When someone last resolved the tasks this worker left running (djq/orphans.py).
    orphans_checked = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["hostname"]
        verbose_name = "worker"

    def __str__(self) -> str:
        return f"{self.hostname} ({'online' if self.online else 'offline'})"

    @property
    def online(self) -> bool:
        return self.stopped is None and self.offline_after > timezone.now()

    @classmethod
    def online_q(cls) -> models.Q:
        return models.Q(stopped__isnull=True, offline_after__gt=timezone.now())


class TaskEvent(models.Model):
    """An event stored by ``djq_events --camera`` (kept ``DJQ_EVENTS_RETENTION_HOURS``)."""

    id = models.BigAutoField(primary_key=True)
    event = models.CharField(max_length=40, db_index=True)
    task_id = models.CharField(max_length=255, blank=True, default="")
    task_name = models.CharField(max_length=255, blank=True, default="")
    hostname = models.CharField(max_length=255, blank=True, default="")
    timestamp = models.DateTimeField(db_index=True)
    fields = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["timestamp", "id"]
        verbose_name = "task event"
        indexes = [models.Index(fields=["task_id", "timestamp"], name="djq_event_task")]

    def __str__(self) -> str:
        return f"{self.event} {self.task_id or self.hostname} at {self.timestamp:%Y-%m-%d %H:%M:%S}"


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
        ordering = ["-priority", "visible_at", "id"]
        indexes = [
            # the claim's order: highest priority, then the earliest due (eta), then FIFO
            models.Index(fields=["queue", "-priority", "visible_at", "id"], name="djq_msg_claim_due"),
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


# -- beat: schedules ------------------------------------------------------------------------
class RevokedTask(models.Model):
    """A revoke: workers load these (so a restarted worker still honours them) and skip the task.

    ``terminate`` asks a worker running the task to stop it with ``signal`` (prefork only).
    Rows older than DJQ_REVOKES_EXPIRE are forgotten by djq_cleanup.
    """

    id = models.BigAutoField(primary_key=True)
    task_id = models.CharField("task id", max_length=255, unique=True)
    terminate = models.BooleanField(default=False)
    signal = models.CharField(max_length=20, default="SIGTERM")
    date_revoked = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-date_revoked"]
        verbose_name = "revoked task"

    def __str__(self) -> str:
        return f"revoke {self.task_id}{' (terminate)' if self.terminate else ''}"


class SavedGroup(models.Model):
    """The task ids of a group, so ``GroupResult.restore(group_id)`` works from any process."""

    group_id = models.CharField("group id", max_length=255, primary_key=True)
    result_ids = models.JSONField(default=list)
    date_created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-date_created"]
        verbose_name = "group result"

    def __str__(self) -> str:
        return f"group {self.group_id} ({len(self.result_ids)} tasks)"


class ChordCounter(models.Model):
    """A chord waiting for its header: how many header tasks finished, and the body to send.

    ``fired`` is claimed with one conditional UPDATE, so exactly one worker sends the body.
    """

    group_id = models.CharField("group id", max_length=255, primary_key=True)
    total = models.PositiveIntegerField()
    done = models.PositiveIntegerField(default=0)
    result_ids = models.JSONField(default=list)
    body = models.JSONField()
    body_id = models.CharField("body task id", max_length=255)
    fired = models.BooleanField(default=False)
    date_created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-date_created"]
        verbose_name = "chord"

    def __str__(self) -> str:
        return f"chord {self.group_id}: {self.done}/{self.total}"


class ParkedMessage(models.Model):
    """An eta task a worker on Redis/RabbitMQ does not hold in memory: too far ahead (it would
    outlive the broker's visibility timeout and run twice) or beyond DJQ_WORKER_ETA_MAX_HELD.

    Workers send it back to its queue when it is due; the row goes in the same transaction.
    """

    id = models.BigAutoField(primary_key=True)
    queue = models.CharField(max_length=200)
    eta = models.DateTimeField(db_index=True)
    task_id = models.CharField("task id", max_length=255, db_index=True)
    task_name = models.CharField("task name", max_length=255)
    headers = models.JSONField()
    body = models.TextField()
    content_type = models.CharField(max_length=100)
    content_encoding = models.CharField(max_length=50)
    priority = models.SmallIntegerField(null=True, blank=True)
    date_parked = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["eta"]
        verbose_name = "waiting eta task"

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] due {self.eta}"
