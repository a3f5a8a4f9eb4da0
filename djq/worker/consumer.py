"""The consumer: takes messages from the broker, turns them into requests, feeds the pool.

Only this thread touches the kombu connection (its connecting, queues and acks are
djq/worker/link.py; what runs when, and revokes, djq/worker/dispatch.py). Pool threads report finished tasks through a queue and wake the
consumer; acks happen here. What is recorded when a task ends (or will not run) is
djq/worker/outcomes.py.

A request's life: received -> (waiting for eta) -> reserved -> running -> done.
Early-ack requests are acked just before they start, so a reserved (not started)
message is never lost if the worker dies. Late-ack requests are acked when done.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future
from queue import Empty, SimpleQueue
from typing import Any, Callable

from kombu import Connection
from kombu import Consumer as KombuConsumer

from .. import signals
from ..backends import current_writer
from ..conf import djq_settings
from ..exceptions import MessageError, NotRegistered
from ..messaging.events import EventDispatcher, received_fields
from ..messaging.producer import is_embedded
from ..messaging.protocol import decode_task
from ..registry import registry
from .eta import EtaParking
from .dispatch import Dispatch
from .modes import BURST_LOOK, RunLimits
from .outcomes import Outcomes
from .ratelimit import TokenBucket
from .rejects import record_rejected
from .request import Request, TaskCall
from .revokes import Revokes
from .started_ahead import STARTED_AHEAD_WAIT
from .trace import Outcome

logger = logging.getLogger(__name__)
#: seconds an AMQP consumer waits for frames while early acks wait for their STARTED rows
AWAITING_LOOK = 0.001


class Consumer(Dispatch):
    def __init__(self, *, pool: Any, queues: list[str], hostname: str, prefetch_count: int,
                 broker_url: str | None = None, soft_time_limit: float | None = None,
                 time_limit: float | None = None, events: EventDispatcher | None = None,
                 limits: RunLimits | None = None) -> None:
        self.pool = pool
        #: --burst / --max-tasks (djq/worker/modes.py)
        self.limits = limits or RunLimits()
        #: publishes task events; None when events are off (then nothing is done per task)
        self.events = events
        #: time limits set by remote control: task name -> (soft, hard)
        self.task_limits: dict[str, tuple[float | None, float | None]] = {}
        self._calls: SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = SimpleQueue()
        self.soft_time_limit = soft_time_limit
        self.time_limit = time_limit
        self.active: dict[int, Request] = {}
        self._warned_limits: set[str] = set()
        self.queue_names = queues
        self.hostname = hostname
        self.prefetch_count = prefetch_count
        #: the prefetch window the broker was last told (see _widen_prefetch)
        self._applied_prefetch = prefetch_count
        #: requests over their rate limit at the last dispatch, held in ``reserved``
        self._rate_held = 0
        self._qos_global = False
        self.broker_url = broker_url or djq_settings.BROKER_URL
        self.accept = djq_settings.accept_content
        self.connection: Connection | None = None
        self.channel: Any = None
        self.kombu_consumer: KombuConsumer | None = None
        self.generation = 0
        self.reserved: deque[Request] = deque()
        self.scheduled: list[tuple[float, int, Request]] = []
        self._seq = itertools.count()
        self._done: SimpleQueue[tuple[int, Outcome]] = SimpleQueue()
        self._done_event = threading.Event()
        self._run_thread: int | None = None
        self._next_restore = 0.0
        self.buckets: dict[str, TokenBucket] = {}
        self.stopping = False
        #: a cold shutdown was asked for: stop waiting for running tasks
        self.cold = False
        self.stats = {"received": 0, "succeeded": 0, "failed": 0, "retried": 0, "rejected": 0, "expired": 0,
                      "revoked": 0}
        #: tasks received per task name (Celery's ``stats()["total"]``)
        self.by_task: dict[str, int] = {}
        self.revokes = Revokes()
        self.parking = EtaParking(is_embedded(self.broker_url))
        self.handles: dict[int, Any] = {}
        #: task ids this worker terminated lately (revoke), and when (time.monotonic())
        self._terminated: dict[str, float] = {}
        self._unsure_acks = []
        self._awaiting = deque()
        self._runtimes = {}
        self.outcomes = Outcomes(hostname, self.stats, events, self._ack,
                                 lambda request: request.connection_generation == self.generation)

    # -- receiving ----------------------------------------------------------------
    def on_message(self, message: Any) -> None:
        queue = (message.delivery_info or {}).get("routing_key") or ""
        try:
            msg = decode_task(message.headers, message.body, message.content_type,
                              message.content_encoding, self.accept)
        except MessageError as exc:
            headers = message.headers or {}
            task_id, task_name = headers.get("id"), headers.get("task")
            self.reject(message, queue, str(exc), headers,
                        task_id=task_id if isinstance(task_id, str) else "",
                        task_name=task_name if isinstance(task_name, str) else "")
            return
        try:
            task = registry.get(msg.task_name)
        except NotRegistered as exc:
            if signals.task_unknown.receivers:
                signals.send(signals.task_unknown, self, message=message, exc=exc, name=msg.task_name,
                             id=msg.task_id)
            self.reject(message, queue, str(exc), msg.headers, task_id=msg.task_id, task_name=msg.task_name)
            return
        self.stats["received"] += 1
        self.by_task[msg.task_name] = self.by_task.get(msg.task_name, 0) + 1
        request = Request(message, msg, task, self.hostname, queue, self.generation)
        if signals.task_received.receivers:
            signals.send(signals.task_received, self, request=request)
        if request.id in self.revokes:
            self.outcomes.not_run(request)
            return
        if self.events is not None:
            self.events.send("task-received", **received_fields(request))
        delay = request.eta_delay()
        if delay > 0 and self.parking.should_park(delay, len(self.scheduled)):
            try:
                parked = self.parking.park(message, msg, queue)
            except Exception as exc:  # the database is away: hold it in memory this time
                logger.warning("could not park eta task %s[%s]: %s", request.name, request.id, exc)
                parked = False
            if parked:
                self._ack(request)
                return
        if delay > 0:
            heapq.heappush(self.scheduled, (time.monotonic() + delay, next(self._seq), request))
        else:
            self.reserved.append(request)

    def reject(self, message: Any, queue: str, reason: str, headers: dict[str, Any], *,
               task_id: str = "", task_name: str = "") -> None:
        """Record a message that cannot run, then drop it from the queue for good."""
        self.stats["rejected"] += 1
        logger.error("rejected message %s (%s) from queue %r: %s", task_id or "-", task_name or "?", queue, reason)
        record_rejected(message, queue, reason, headers, task_id=task_id, task_name=task_name, worker=self.hostname)
        message.reject(requeue=False)
        if signals.task_rejected.receivers:
            signals.send(signals.task_rejected, self, message=message, exc=MessageError(reason))
        if self.events is not None:
            self.events.send("task-rejected", uuid=task_id, name=task_name, requeue=False, reason=reason)

    def _on_done(self, call: TaskCall, outcome: Outcome) -> None:
        """Called from the pool when a task finished; handled here once its states are stored."""
        def done() -> None:
            self._done.put((call.seq, outcome))
            self._done_event.set()
            self.wake()

        writer = current_writer()
        if writer is None:
            done()
        else:
            writer.after(done)
            if threading.get_ident() != self._run_thread:
                # The pool slot is free already: the consumer may fill it now. Only what
                # reads the stored end (a late ack, counts, events) waits for the writer.
                # (The solo pool calls this in the consumer's own thread: nothing to wake.)
                self._done_event.set()
                self.wake()

    def _wait_for_writer(self) -> None:
        """Until the result writer has stored what the pool reported (and said so here)."""
        writer = current_writer()
        if writer is not None:
            stored = threading.Event()
            writer.after(stored.set)
            if not stored.wait(timeout=writer.patience + 5):
                logger.error("the result writer has not stored the pool's states after %.0fs", writer.patience)

    def _process_done(self) -> None:
        while True:
            try:
                seq, outcome = self._done.get_nowait()
            except Empty:
                return
            self._finish(seq, outcome)

    def _finish(self, seq: int, outcome: Outcome) -> None:
        request = self.active.pop(seq)
        self.handles.pop(seq, None)
        if outcome.recorded:  # a run cut short says nothing of how long the task takes
            self._note_runtime(request.name, outcome.runtime)
        self.outcomes.finished(request, outcome, self.revokes.terminate.get(request.id))

    def call_soon(self, function: Callable[[], Any]) -> Future[Any]:
        """Run ``function`` in the consumer thread (for remote control); returns its Future."""
        future: Future[Any] = Future()
        self._calls.put((function, future))
        self.wake()
        self._done_event.set()
        return future

    def _run_calls(self) -> None:
        while not self._calls.empty():
            function, future = self._calls.get_nowait()
            try:
                future.set_result(function())
            except Exception as exc:
                future.set_exception(exc)

    def _timeout(self) -> float:
        # While tasks run (or their ends are being stored), come back often enough to ack
        # them; djq:// and Redis are woken at once anyway (a task ending, a shutdown
        # signal), AMQP only by its own traffic, so an idle AMQP wait is cut short enough
        # for a warm shutdown to begin at once.
        timeout = 0.1 if self.active or self.pool.active() else (1.0 if self._wakeable() else 0.25)
        if self._awaiting and not self._wakeable():
            # acks wait for their STARTED rows, and the writer cannot wake an AMQP wait:
            # look again soon, reading what arrives meanwhile
            timeout = min(timeout, AWAITING_LOOK)
        if self.limits.burst:
            timeout = min(timeout, BURST_LOOK)
        if self.scheduled:
            timeout = min(timeout, max(self.scheduled[0][0] - time.monotonic(), 0.0))
        if self.reserved and self.buckets:
            waits = [self.buckets[r.name].wait_time() for r in self.reserved if r.name in self.buckets]
            if waits:
                timeout = min(timeout, min(waits))
        return timeout

    # -- the loop -----------------------------------------------------------------
    def run(self) -> None:
        """Consume until ``stop()``; then finish running tasks (warm shutdown)."""
        if self.connection is None:
            raise RuntimeError("Consumer.run() called before connect()")
        errors = self.connection.connection_errors + self.connection.channel_errors
        self._run_thread = threading.get_ident()
        while not self.stopping:
            try:
                self._run_calls()
                self._process_done()
                self._start_stored_first()
                self._check_revokes()
                self._release_parked()
                self._promote_scheduled()
                if self._unsure_acks:
                    self._settle_acks()
                self._dispatch()
                self._widen_prefetch()
                self._flush_acks()
                self._maybe_restore()
                if self.limits.used_up:
                    logger.info("--max-tasks %d reached: warm shutdown", self.limits.max_tasks)
                    self.stopping = True
                if self.stopping:
                    break
                if len(self.reserved) > self._rate_held and \
                        self.limits.room(self.pool.free_slots()) > self._awaiting_count():
                    # The solo pool ran a task in this turn and is free again: run what is
                    # reserved before taking more, so a take fetches the whole free
                    # prefetch window at once instead of one message per task.
                    continue
                if (self.reserved and self.pool.free_slots() <= 0) or \
                        (self._awaiting and not self.pool.parallel and self._room() <= self._awaiting_count()):
                    # Messages wait for a slot, or (solo) the one slot waits for the ack
                    # that waits for its STARTED row: what matters now is a task finishing
                    # or the writer's answer (both set this event). Other pools read what
                    # arrives meanwhile, so that their next free slots find it here.
                    self._done_event.wait(self._timeout())
                    self._done_event.clear()
                    continue
                self.connection.drain_events(timeout=self._timeout())
            except socket.timeout:
                if self.limits.burst and not self.reserved and not self._awaiting and not self.pool.active():
                    logger.info("--burst: no message ready in %s: stopping", ", ".join(self.queue_names))
                    self.stopping = True
            except errors as exc:
                self._reconnect(exc)
        self._drain_running()

    def _drain_running(self) -> None:
        if self.kombu_consumer is not None and self.connection is not None:
            try:
                self.kombu_consumer.cancel()
            except Exception as exc:
                logger.warning("could not cancel the consumer: %s", exc)
        self._ack_awaiting()
        self._run_acked()
        if self.pool.active():
            logger.info("warm shutdown: waiting for %d running task(s)", self.pool.active())
        while self.pool.active() and not self.cold:
            self._process_done()
            time.sleep(0.01)  # not a blocking queue get: green pools must get to run
        self._wait_for_writer()
        self._process_done()
        try:
            self._flush_acks()
        except Exception as exc:
            logger.warning("could not flush acks at shutdown: %s", exc)
        for _, requests, _ in self._unsure_acks:  # stopped before the broker could be asked
            for request in requests:
                logger.error("task %s[%s] not run: the worker stopped before it learned whether the broker "
                             "took its ack (if it did, the task is lost)", request.name, request.id)

    def _ack_awaiting(self) -> None:
        """Warm shutdown: requests waiting for their STARTED rows are acked once the writer
        has answered (or they waited ``STARTED_AHEAD_WAIT``) and run with what is running
        (``_run_acked``). Cold, even when it turns cold meanwhile, they stay unacked (the
        broker delivers them again) and their rows go back to PENDING."""
        deadline = time.monotonic() + STARTED_AHEAD_WAIT
        while self._awaiting and not self.cold and time.monotonic() < deadline:
            if self._awaiting[-1].answered.wait(0.05):  # the writer answers in order
                break
        if self.cold:
            for awaiting in self._awaiting:
                for request in awaiting.requests:
                    self._unstart(request)
            self._awaiting.clear()
            return
        try:
            self._start_stored_first()
        except Exception as exc:
            logger.warning("could not ack the tasks about to start: %s", exc)

    def _run_acked(self) -> None:
        """Warm shutdown: requests whose early ack the broker took (its reply lost) are
        gone from the broker, so they run before the worker stops, as running tasks do."""
        try:
            if self._unsure_acks:
                self._settle_acks()
        except Exception as exc:
            logger.warning("could not ask the broker about acks whose reply was lost: %s", exc)
        acked = [request for request in self.reserved if request.ack_taken]
        while acked and not self.cold:
            if self.pool.free_slots() > 0:
                self.limits.started += 1
                self._submit(acked.pop(0))
            else:
                self._process_done()
                time.sleep(0.01)

    def stop(self) -> None:
        self.stopping = True
        self.wake()

    def cold_stop(self) -> None:
        """Stop consuming and stop waiting for running tasks (the worker then abandons them)."""
        self.cold = True
        self.stop()

    def abandon(self) -> None:
        """Cold shutdown, once the pool is stopped: record the tasks it stopped in the middle.

        Tasks that ended meanwhile keep their own end; acks_late ones are delivered again
        (their messages return when the channel closes) and their rows say so."""
        self._wait_for_writer()
        self._process_done()
        self.outcomes.abandon(list(self.active.values()))
        self.active.clear()

