"""One beat tick: read the enabled periodic tasks, claim each due run in the database, send it.

The claim is a compare-and-set on the task's row: ``UPDATE ... SET last_run_at = <this
run>, total_run_count = total_run_count + 1 WHERE id = ... AND last_run_at = <what this
beat read> AND enabled AND date_changed = <what this beat read>``. One beat's update
matches; every other beat's matches nothing (PostgreSQL makes them wait for the row lock
and then re-checks the WHERE; SQLite lets one writer in at a time). The run is also
logged as a PeriodicRun whose (task, scheduled time) is unique, a second guard. Due runs
are claimed in batches (djq.beat.claims: one statement and one run-log insert per batch);
a batch that fails is rolled back and its runs are sent one by one.

Sending, by broker:
- ``djq://`` on the database beat uses: the claim, the run log row and the message row
  commit in one transaction. A beat killed mid-tick did all of it or none of it, and
  another beat sends the run. Exactly once.
- Any other broker (or another database): the claim commits with the run row marked
  unpublished, the message is published, then the row is marked published. If
  publishing fails, the claim is undone and the run is tried again on the next tick.
  If the beat dies between the commit and the publish, the run row stays unpublished;
  after ``ORPHAN_AFTER`` seconds any beat claims that row (compare-and-set again) and
  publishes it with the same task id. Nothing is lost; a duplicate needs a beat to die
  in the instant between the broker taking the message and the row being marked.

Beat's own writes are ``UPDATE``s that leave ``date_changed`` alone, so they never count
as edits. Each task keeps its next run in ``due_at`` (indexed): the claim moves it on, and
``save()`` and beat recompute it after an edit. So a tick reads only the rows due now and
the rows edited since the last tick (their ``date_changed``, or their schedule's, moved),
not the whole table. It first asks one statement of indexed look-ups (djq.beat.probe: the
latest edit of a task and of each kind of schedule, the newest id, the earliest stored
next run, an empty ``last_run_at``); when that matches the last tick's and no run is due
yet, the tick ends there, at a cost that does not grow with the table. Edits made with
``QuerySet.update()`` that leave ``date_changed`` alone are caught by ``probe.revalidate``,
which checks every stored next run: in a thread of the beat service every
``FULL_READ_EVERY`` seconds (never inside a tick), or, for a Scheduler used on its own,
inside its first tick and every ``FULL_READ_EVERY`` seconds after.

Due runs are sent a batch at a time (``runs.publish_many``): on djq:// one multi-row
insert inside the claim's transaction; on other brokers one bulk publish after the claim
commits.
"""
from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, router, transaction
from django.db.models import F, Min, Q, QuerySet

from ..conf import djq_settings
from ..exceptions import DjqError
from ..registry import registry
from . import timing
from .claims import AsRead, Due, batch_size, claim_many, claim_one, insert_runs, store_due
from .probe import probe, revalidate
from .runs import ORPHAN_AFTER, embedded_here, mark_published, publish, publish_many, run_now, send_orphans  # noqa: F401 (public here)
from .schedules import Clocked, Schedule, ScheduleError

if TYPE_CHECKING:
    from ..models import PeriodicRun, PeriodicTask

logger = logging.getLogger(__name__)
PRUNE_EVERY = 3600.0
#: Seconds between full reads of the table even when its fingerprint has not changed.
FULL_READ_EVERY = 60.0
#: Rows fetched at a time when reading the table.
READ_CHUNK = 2000
#: Parsed schedules kept (the cache starts again when full).
SCHEDULE_CACHE = 10_000


class Scheduler:
    """Sends due periodic runs from database ``using`` (default: where PeriodicTask is written)."""

    def __init__(self, *, using: str | None = None, beat_name: str = "", revalidated_elsewhere: bool = False) -> None:
        from ..models import PeriodicTask

        self.using = using or router.db_for_write(PeriodicTask)
        self.beat_name = beat_name
        self._reported: dict[int, str] = {}
        self._pruned_at: float | None = None
        #: what the last full read saw: the table's fingerprint, the next due run, and when
        self._fingerprint: dict[str, Any] | None = None
        self._upcoming: datetime | None = None
        self._read_at = 0.0
        #: a due run was not sent (an error): the next tick must read the table again
        self._unsent = False
        #: next runs this tick worked out for rows it did not claim, written together at its end
        self._due_found: list[tuple[AsRead, datetime | None]] = []
        #: parsed schedules by (kind, schedule row id, its date_changed)
        self._schedules: dict[tuple[str, int, datetime], Schedule] = {}
        #: True when another thread runs ``revalidate`` (djq.beat.service); then no tick does
        self.revalidated_elsewhere = revalidated_elsewhere
        #: set by that thread when it fixed a stored next run: the next tick reads the due rows
        self.fixed_elsewhere = False

    @property
    def one_transaction(self) -> bool:
        """True when the claim and the message can commit together (djq:// on our database)."""
        return embedded_here(self.using)

    def tick(self, now: datetime | None = None) -> datetime | None:
        """Send every due run; returns when the next one is due (None: nothing is scheduled)."""
        now = now or timing.now()
        full = not self.revalidated_elsewhere and (
            self._fingerprint is None or time.monotonic() - self._read_at >= FULL_READ_EVERY)
        if full:  # on its own, a Scheduler checks every stored next run itself (djq.beat.probe)
            revalidate(self.using, now=now)
            self._read_at = time.monotonic()
        fingerprint = probe(self.using)
        fixed, self.fixed_elsewhere = self.fixed_elsewhere, False
        quiet = (not full and not fixed and fingerprint == self._fingerprint and not self._unsent
                 and (self._upcoming is None or now < self._upcoming))
        if not quiet:
            self._unsent = False
            self._due_found.clear()
            rows = self._rows_to_read(now, fingerprint).iterator(chunk_size=READ_CHUNK)
            due = [run for row in rows if (run := self._handle(row, now))]
            size = batch_size(self.using)
            for start in range(0, len(due), size):
                self._send_batch(due[start:start + size])
            store_due(self._due_found, self.using)
            self._due_found.clear()
            # Taken before the read: an edit made during it shows as a change next tick. A
            # task that never ran, seen before this read, may be claimed by it and then have
            # its last_run_at emptied again before the next probe: that probe would look the
            # same, so "never ran" is remembered as unknown and the next tick reads again.
            self._fingerprint = {**fingerprint, "never_ran": None} if fingerprint["never_ran"] else fingerprint
            self._upcoming = self._next_due(now)
        if not self.one_transaction:
            send_orphans(self.using, self.beat_name, self._report)
        self._prune()
        return self._upcoming

    def _rows_to_read(self, now: datetime, fingerprint: dict[str, Any]) -> QuerySet[PeriodicTask]:
        """The tasks due now and those edited since the last tick (at the first tick: due ones only)."""
        from ..models import SCHEDULE_FIELDS, PeriodicTask

        rows = PeriodicTask.objects.using(self.using).select_related(*SCHEDULE_FIELDS).order_by("pk")
        wanted = Q(enabled=True, due_at__lte=timing.to_db(now))
        if fingerprint["never_ran"]:  # last_run_at = None means "due now", however it was written
            wanted |= Q(enabled=True, last_run_at__isnull=True)
        if self._fingerprint is None:
            return rows.filter(wanted)  # edits before this beat started: revalidate's
        for key, prefix in (("edited", ""), *((name, f"{name}__") for name in SCHEDULE_FIELDS)):
            edited, seen = fingerprint[key], self._fingerprint.get(key)
            if edited is None or edited == seen:
                continue
            # An edit stamped before ``seen`` but committed after it is left to revalidate.
            wanted |= (Q(**{f"{prefix}date_changed__gt": seen}) if seen is not None
                       else Q(**{f"{prefix}date_changed__isnull": False}))
        return rows.filter(wanted)

    def _next_due(self, now: datetime) -> datetime | None:
        """The next run due after this tick (runs still due now failed to send, and are retried each tick)."""
        from ..models import PeriodicTask

        due = (PeriodicTask.objects.using(self.using).filter(enabled=True, due_at__gt=timing.to_db(now))
               .aggregate(due=Min("due_at"))["due"])
        return timing.from_db(due)

    def _handle(self, row: PeriodicTask, now: datetime) -> Due | None:
        """The run of ``row`` to send now, if any; keeps its stored next run right otherwise."""
        if not row.enabled:  # edited since the last tick, and now disabled
            self._store_due(row, None)
            return None
        try:
            schedule = self._schedule_of(row)
            timeline: dict[str, Any] = {
                "last_run_at": timing.from_db(row.last_run_at), "changed_at": row.changed_at(),
                "start_time": timing.from_db(row.start_time), "run_count": row.total_run_count,
            }
            scheduled = timing.run_to_send(schedule, now=now, **timeline)
            if scheduled is None:
                self._store_due(row, timing.next_run(schedule, now=now, **timeline))
                return None
            disable = row.one_off or isinstance(schedule, Clocked)
            # The claim moves last_run_at to ``scheduled``; the schedule carries on from there.
            timeline.update(last_run_at=scheduled, run_count=row.total_run_count + 1, changed_at=None)
            following = None if disable else timing.next_run(schedule, now=now, **timeline)
        except ScheduleError as exc:
            self._report(row, f"periodic task {row.name!r} is skipped: {exc}")
            self._store_due(row, None)  # the full read tries it again
            return None
        expires = timing.from_db(row.expires)
        if expires is not None and now >= expires:
            self._expire(row)
            return None
        try:
            task = registry.get(row.task)
        except DjqError as exc:
            self._report(row, f"periodic task {row.name!r} is skipped: {exc}")
            self._store_due(row, scheduled)
            return None
        return Due(row, schedule, scheduled, following, disable, task)

    def _schedule_of(self, row: PeriodicTask) -> Schedule:
        """``row.schedule``, parsed once per schedule row and edit (a crontab's parse is not free)."""
        model = row.schedule_model
        if model is None:
            return row.schedule  # raises ScheduleError
        key = (type(model).__name__, model.pk, model.date_changed)
        found = self._schedules.get(key)
        if found is None:
            if len(self._schedules) >= SCHEDULE_CACHE:
                self._schedules.clear()
            found = self._schedules[key] = model.as_schedule()
        return found

    def _send_batch(self, batch: list[Due]) -> None:
        """Claim a batch with one statement, log the runs with one insert, send the messages.

        Any error rolls the batch back, and its runs are then sent one by one, so that one
        bad run is reported alone and does not hold up the others.
        """
        from ..models import PeriodicRun

        try:
            with transaction.atomic(using=self.using):
                taken = claim_many(batch, self.using)
                sent = timing.to_db(timing.now())
                mine = [(due, self._run_row(due, sent)) for due in batch if due.row.pk in taken]
                insert_runs([run for _, run in mine], self.using)
                if self.one_transaction:
                    publish_many([(due.task, due.row, run) for due, run in mine])
        except (IntegrityError, DjqError) as exc:
            logger.debug("beat: a batch of %d runs failed (%s); sending them one by one", len(batch), exc)
            for due in batch:
                self._send(due)
            return
        for due in batch:
            if due.row.pk not in taken:
                # Another beat claimed it, or (SKIP LOCKED) is claiming it now and may yet die
                # before it commits: look at the rows due again next tick.
                self._unsent = True
                logger.debug("beat: %r for %s was claimed by another beat", due.row.name, due.scheduled.isoformat())
        if not self.one_transaction:
            mine = self._publish_batch(mine)
            mark_published([run for _, run in mine], self.using)
        for due, run in mine:
            self._sent(due, run)

    def _run_row(self, due: Due, sent: datetime) -> PeriodicRun:
        from ..models import PeriodicRun

        return PeriodicRun(periodic_task_id=due.row.pk, scheduled_at=timing.to_db(due.scheduled), sent_at=sent,
                           task_id=str(uuid.uuid4()), beat=self.beat_name[:255],
                           published_at=sent if self.one_transaction else None)

    def _publish_batch(self, mine: list[tuple[Due, PeriodicRun]]) -> list[tuple[Due, PeriodicRun]]:
        """Publish a committed batch in one bulk send; the runs the broker took.

        If the bulk send fails, each run is published on its own with the same task id (so a
        message the failed send did deliver may arrive twice, under one task id), and a run
        that still fails is unclaimed.
        """
        try:
            publish_many([(due.task, due.row, run) for due, run in mine])
        except DjqError as exc:
            logger.warning("beat: sending %d runs at once failed (%s); sending them one by one", len(mine), exc)
            return [(due, run) for due, run in mine if self._publish_claimed(due, run)]
        return mine

    def _publish_claimed(self, due: Due, run: PeriodicRun) -> bool:
        """Publish a committed claim to a broker outside the database; undo the claim if it fails."""
        try:
            publish(due.task, due.row, run)
        except DjqError as exc:
            self._unclaim(due.row, run)
            self._report(due.row, f"periodic task {due.row.name!r}: could not send the run for "
                                  f"{due.scheduled.isoformat()} ({exc}); trying again next tick", retry=True)
            return False
        return True

    def _sent(self, due: Due, run: PeriodicRun) -> None:
        self._reported.pop(due.row.pk, None)
        logger.info("beat: sent %r (%s) for %s as task %s%s", due.row.name, due.row.task, due.scheduled.isoformat(),
                    run.task_id, "; disabled it (runs once)" if due.disable else "")

    def _store_due(self, row: PeriodicTask, due: datetime | None) -> None:
        """Note the next run worked out from what this beat read; written at the end of the tick."""
        if timing.from_db(row.due_at) != due:
            self._due_found.append((AsRead(row.pk, row.date_changed, row.last_run_at), due))

    def _send(self, due: Due) -> bool:
        """Claim and send one run on its own; False when another beat had it (or it could not be sent)."""
        from ..models import PeriodicRun

        row, scheduled = due.row, due.scheduled
        try:
            with transaction.atomic(using=self.using):
                if not claim_one(due, self.using):
                    logger.debug("beat: %r for %s was claimed by another beat", row.name, scheduled.isoformat())
                    return False
                run = self._run_row(due, timing.to_db(timing.now()))
                run.save(using=self.using, force_insert=True)
                if self.one_transaction:
                    publish(due.task, row, run)
        except IntegrityError:
            self._report(row, f"periodic task {row.name!r}: the run for {scheduled.isoformat()} was already sent; "
                              "was last_run_at moved back by hand?")
            self._store_due(row, scheduled)
            return False
        except DjqError as exc:
            self._report(row, f"periodic task {row.name!r}: could not send the run for {scheduled.isoformat()}: {exc}",
                         retry=True)
            self._store_due(row, scheduled)  # rolled back with the claim: still due, next tick
            return False
        if not self.one_transaction:
            if not self._publish_claimed(due, run):
                return False
            mark_published([run], self.using)
        self._sent(due, run)
        return True

    def _unclaim(self, row: PeriodicTask, run: PeriodicRun) -> None:
        from ..models import PeriodicRun, PeriodicTask

        with transaction.atomic(using=self.using):
            PeriodicRun.objects.using(self.using).filter(task_id=run.task_id).delete()
            PeriodicTask.objects.using(self.using).filter(pk=row.pk, last_run_at=run.scheduled_at).update(
                last_run_at=row.last_run_at, total_run_count=F("total_run_count") - 1, enabled=row.enabled,
                due_at=run.scheduled_at)  # due again: the next tick retries it

    def _expire(self, row: PeriodicTask) -> None:
        from ..models import PeriodicTask

        if PeriodicTask.objects.using(self.using).filter(pk=row.pk, enabled=True).update(enabled=False, due_at=None):
            logger.warning("beat: periodic task %r expired at %s: disabled", row.name, row.expires)

    def _report(self, row: PeriodicTask, message: str, *, retry: bool = False) -> None:
        """Log a problem with one task once, not on every tick; ``retry``: read the table again next tick."""
        self._unsent = self._unsent or retry
        if self._reported.get(row.pk) != message:
            self._reported[row.pk] = message
            logger.error("beat: %s", message)

    def _prune(self) -> None:
        from ..models import PeriodicRun

        days = djq_settings.BEAT_RUN_HISTORY_DAYS
        if days is None or (self._pruned_at is not None and time.monotonic() - self._pruned_at < PRUNE_EVERY):
            return
        self._pruned_at = time.monotonic()
        cutoff = timing.to_db(timing.now() - timedelta(days=days))
        PeriodicRun.objects.using(self.using).filter(sent_at__lt=cutoff).delete()
