"""Sending one periodic run: the message, the run log's published mark, Run now, and runs left
unsent by a beat that died between its claim and the broker (see djq.beat.scheduler)."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable

from django.db import router, transaction

from .. import enqueue
from ..conf import djq_settings
from ..exceptions import DjqError
from ..messaging import producer
from ..registry import registry
from . import timing

if TYPE_CHECKING:
    from ..models import PeriodicRun, PeriodicTask

logger = logging.getLogger("djq.beat.scheduler")  # one logger for beat's sending, as before the split
#: Seconds after which a run row still unpublished is taken to be a dead beat's (well
#: past the producer's own retries, about a second).
ORPHAN_AFTER = 60.0


def embedded_here(using: str) -> bool:
    """True when the claim and the message can commit together (djq:// on database ``using``)."""
    url = djq_settings.BROKER_URL
    return producer.is_embedded(url) and producer.embedded_alias(url) == using


def send_orphans(using: str, beat_name: str, report: Callable[..., None]) -> None:
    """Publish runs whose beat claimed them and died before the broker had the message."""
    from ..models import PeriodicRun

    now = timing.now()
    stale = timing.to_db(now - timedelta(seconds=ORPHAN_AFTER))
    orphans = (PeriodicRun.objects.using(using).filter(published_at__isnull=True, sent_at__lt=stale)
               .select_related("periodic_task"))
    for run in orphans:
        taken = PeriodicRun.objects.using(using).filter(
            pk=run.pk, published_at__isnull=True, sent_at=run.sent_at,
        ).update(sent_at=timing.to_db(now), beat=beat_name[:255])
        if not taken:
            continue  # another beat took it
        row = run.periodic_task
        try:
            publish(registry.get(row.task), row, run)
        except DjqError as exc:
            report(row, f"periodic task {row.name!r}: could not send the run for "
                        f"{timing.from_db(run.scheduled_at).isoformat()} left by a stopped beat ({exc}); "
                        "trying again later")
            continue
        mark_published([run], using)
        logger.warning("beat: sent %r for %s as task %s: the beat that claimed it (%s) stopped before sending",
                       row.name, timing.from_db(run.scheduled_at).isoformat(), run.task_id, run.beat or "?")


def mark_published(runs: list[PeriodicRun], using: str) -> None:
    """One update for the runs the broker now has."""
    from ..models import PeriodicRun

    if runs:
        PeriodicRun.objects.using(using).filter(task_id__in=[run.task_id for run in runs]).update(
            published_at=timing.to_db(timing.now()))


def publish(task: Any, row: PeriodicTask, run: PeriodicRun) -> None:
    """Send ``row``'s task through the normal producer, with the run's task id."""
    expires: float | datetime | None = timing.from_db(row.expires) or row.expire_seconds
    task.apply_async(row.args, row.kwargs, queue=row.queue or None, priority=row.priority, expires=expires,
                     task_id=run.task_id)


def publish_many(sends: list[tuple[Any, PeriodicTask, PeriodicRun]]) -> None:
    """Send many runs at once: each run's message built as ``publish`` builds it, then one bulk
    send (djq://: one multi-row INSERT; Redis: a pipeline; AMQP: one channel).

    Tasks that send their own way (a subclass's ``apply_async``, eager mode) are sent one by
    one. Raises DjqError as ``publish`` does; on a broker other than djq:// some of the
    messages may then have gone out.
    """
    from ..task import Task

    if djq_settings.TASK_ALWAYS_EAGER:
        for task, row, run in sends:
            publish(task, row, run)
        return
    templates: dict[tuple[Any, ...], Any] = {}
    messages = []
    for task, row, run in sends:
        if type(task).apply_async is not Task.apply_async:
            publish(task, row, run)
            continue
        expires: float | datetime | None = timing.from_db(row.expires) or row.expire_seconds
        key = (task.name, row.queue, row.priority, expires)
        if key not in templates:  # resolved once per kind of run in the batch
            templates[key] = enqueue.resolve(task, queue=row.queue or None, priority=row.priority, expires=expires)
        messages.append(enqueue.build(templates[key], row.args, row.kwargs, task_id=run.task_id))
    enqueue.send_many(messages)


def run_now(row: PeriodicTask, *, using: str | None = None, sent_by: str = "") -> str:
    """Send ``row``'s task once now, outside its schedule (the admin's Run now); returns the task id."""
    from ..models import PeriodicRun

    using = using or router.db_for_write(type(row))
    task = registry.get(row.task)
    together = embedded_here(using)
    sent = timing.now()
    with transaction.atomic(using=using):
        run = PeriodicRun.objects.using(using).create(
            periodic_task_id=row.pk, scheduled_at=timing.to_db(sent), sent_at=timing.to_db(sent),
            task_id=str(uuid.uuid4()), beat=sent_by[:255], manual=True,
            published_at=timing.to_db(sent) if together else None)
        if together:
            publish(task, row, run)
    if not together:
        try:
            publish(task, row, run)
        except DjqError:
            PeriodicRun.objects.using(using).filter(pk=run.pk).delete()
            raise
        mark_published([run], using)
    return run.task_id
