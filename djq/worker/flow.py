"""What a finished task sends next: link callbacks, the rest of its chain, its chord's body.

Runs in the process that ran the task, after its outcome is stored, and only for messages
whose embed holds something (a plain task pays nothing).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db.models import F

from .. import states
from ..backends import database_alias, get_backend
from ..backends.base import TaskInfo, decode_value, exception_to_meta
from ..canvas import signature
from ..context import RequestContext
from ..exceptions import ChordError

if TYPE_CHECKING:
    from ..task import Task
    from .trace import Outcome

logger = logging.getLogger(__name__)


def follow_up(task: Task[Any, Any], context: RequestContext, outcome: Outcome) -> None:
    embed = context.embed
    related: dict[str, Any] = {"parent_id": context.id, "root_id": context.root_id or context.id}
    if outcome.state == states.SUCCESS:
        for callback in embed.get("callbacks") or ():
            signature(callback).apply_async((outcome.value,), **related)
        rest = list(embed.get("chain") or ())
        if rest:
            following = signature(rest.pop())
            following.apply_async((outcome.value,), embed={"chain": rest} if rest else None, **related)
    else:
        for errback in embed.get("errbacks") or ():
            signature(errback).apply_async((context.id,), **related)
    if embed.get("chord") and context.group_id:
        chord_part_done(context, outcome)


def note_follow_up_failure(info: TaskInfo, exc: BaseException) -> str:
    """Say on the task's stored result that what follows it could not be sent (its state
    stays as stored); returns the note, for the worker's event."""
    from ..models import TaskResult

    note = f"its callbacks, chain or chord could not be sent: {type(exc).__name__}: {exc}"
    try:
        rows = TaskResult.objects.using(database_alias()).filter(task_id=info.task_id)
        current = rows.values_list("traceback", flat=True).first()
        rows.update(traceback=f"{current}\n{note}" if current else note)
    except Exception:
        logger.exception("task %s[%s]: could not note that %s", info.task_name, info.task_id, note)
    return note


def chord_part_done(context: RequestContext, outcome: Outcome) -> None:
    """Count this header task; the worker that sees the whole header done sends the body once."""
    from ..backends.celery_chord import part_done
    from ..models import ChordCounter

    alias = database_alias()
    counters = ChordCounter.objects.using(alias).filter(group_id=context.group_id)
    # With the Celery Redis result bridge, chords without a counter row (sent by Celery,
    # or by djq with the bridge on) are counted in Celery's keys, as Celery workers do.
    client = getattr(get_backend(), "redis", None)
    if client is not None and not counters.exists():
        value = exception_to_meta(outcome.value) if outcome.state == states.FAILURE else outcome.value
        claim = part_done(client, str(context.group_id), str(context.id), context.headers.get("group_index"),
                          outcome.state, value)
        if claim is not None:
            _send_celery_body(claim, context)
        return
    counters.update(done=F("done") + 1)
    row: dict[str, Any] | None = counters.values(  # type: ignore[assignment]
        "total", "done", "result_ids", "body", "body_id").first()
    if row is None:
        logger.error("chord %s: no counter row (deleted by cleanup?); its body cannot run", context.group_id)
        return
    if outcome.state == states.FAILURE:
        if _claim(alias, context.group_id):
            fail_chord_body(row, context, _header_failed(context.id, outcome.value))
        return
    if row["done"] < row["total"]:
        return
    results = _header_results(alias, row["result_ids"])
    if results is None:  # counted twice (a redelivered header task); another finisher completes it
        return
    failed = [(task_id, value) for task_id, (state, value) in results.items() if state != states.SUCCESS]
    if not _claim(alias, context.group_id):
        return
    if failed:
        fail_chord_body(row, context, _header_failed(failed[0][0], failed[0][1]))
        return
    values = [results[task_id][1] for task_id in row["result_ids"]]
    body = signature(row["body"])
    options: dict[str, Any] = {"task_id": row["body_id"]} if body.subtask_type is None else {}
    body.apply_async((values,), parent_id=context.id, root_id=context.root_id or context.id, **options)


def _send_celery_body(claim: Any, context: RequestContext) -> None:
    """The header counted in Celery's keys is complete: send the body (from the message's
    embed, as a Celery worker does) with the results in header order, or fail it."""
    body = signature(context.embed["chord"])
    row = {"body": dict(body), "body_id": body.options.get("task_id") or context.group_id}
    try:
        failed = claim.failed()
        if failed is not None:
            task_id, error = failed
            kind = error.get("exc_type", "Exception") if isinstance(error, dict) else type(error).__name__
            detail = error.get("exc_message", "") if isinstance(error, dict) else error
            fail_chord_body(row, context, f"header task {task_id} failed: {kind}: {detail}")
            return
        try:
            body.apply_async((claim.values(),), parent_id=context.id, root_id=context.root_id or context.id)
        except Exception as exc:  # the body's result says so (as Celery's does), not only this task's
            fail_chord_body(row, context, f"its body could not be sent: {type(exc).__name__}: {exc}")
            raise
    finally:
        claim.release()


def _claim(alias: str, group_id: str | None) -> bool:
    from ..models import ChordCounter

    return ChordCounter.objects.using(alias).filter(group_id=group_id, fired=False).update(fired=True) == 1


def _header_results(alias: str, ids: list[str]) -> dict[str, tuple[str, Any]] | None:
    """task id -> (state, decoded value) when every header task is ready, else None."""
    from ..models import TaskResult

    rows = TaskResult.objects.using(alias).filter(task_id__in=ids).values_list("task_id", "state", "result")
    found = {task_id: (state, raw) for task_id, state, raw in rows}
    if len(found) < len(ids) or any(state not in states.READY_STATES for state, _ in found.values()):
        return None
    backend = get_backend()
    return {task_id: (state, backend.decode_result(state, decode_value(raw))) for task_id, (state, raw) in found.items()}


def _header_failed(task_id: str | None, error: Any) -> str:
    return f"header task {task_id} failed: {type(error).__name__}: {error}"


def fail_chord_body(row: dict[str, Any], context: RequestContext, reason: str) -> None:
    """The body cannot run (a header task failed, or it could not be sent): store it
    (``row["body"]``, ``row["body_id"]``) as FAILURE with a ChordError saying ``reason``,
    and call its errbacks."""
    body = signature(row["body"])
    message = f"chord {context.group_id}: {reason}"
    logger.error("%s; its body %s will not run", message, body.name)
    chord_error = ChordError(message)
    info = TaskInfo(task_id=row["body_id"], task_name=body.name, parent_id=context.id,
                    root_id=context.root_id or context.id)
    get_backend().store(info, states.FAILURE, result=exception_to_meta(chord_error), traceback=message)
    for errback in body.options.get("link_error") or ():
        signature(errback).apply_async((row["body_id"],), parent_id=context.id)
