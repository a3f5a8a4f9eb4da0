"""The consumer: takes messages from the broker, turns them into requests, feeds the pool.

Only this thread touches the kombu connection (its connecting, queues and acks are
djq/worker/link.py). Pool threads report finished tasks through a queue and wake the
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

from ..backends import current_writer
from ..conf import djq_settings
from ..exceptions import MessageError, NotRegistered
from ..messaging.events import EventDispatcher, received_fields
from ..messaging.producer import is_embedded, publish_now
from ..messaging.protocol import decode_task
from ..registry import registry
from ..control import signal_number
from .eta import EtaParking
from .link import BrokerLink
from .modes import BURST_LOOK, RunLimits
from .outcomes import Outcomes
from .ratelimit import TokenBucket
from .rejects import record_rejected
from .request import Request, TaskCall, run_call
from .revokes import Revokes
from .trace import Outcome

logger = logging.getLogger(__name__)
#: AMQP's prefetch count is a 16-bit field
MAX_PREFETCH = 65535


class Consumer(BrokerLink):
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
        self._next_restore = 0.0
        self.buckets: dict[str, TokenBucket] = {}
        self.stopping = False
        #: a cold shutdown was asked for: stop waiting for running tasks
        self.cold = False
        self.stats = {"received": 0, "succeeded": 0, "failed": 0, "retried": 0, "rejected": 0, "expired": 0,
                      "revoked": 0}
        self.revokes = Revokes()
        self.parking = EtaParking(is_embedded(self.broker_url))
        self.handles: dict[int, Any] = {}
        #: task ids this worker terminated lately (revoke), and when (time.monotonic())
        self._terminated: dict[str, float] = {}
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
            self.reject(message, queue, str(exc), msg.headers, task_id=msg.task_id, task_name=msg.task_name)
            return
        self.stats["received"] += 1
        request = Request(message, msg, task, self.hostname, queue, self.generation)
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
        if self.events is not None:
            self.events.send("task-rejected", uuid=task_id, name=task_name, requeue=False, reason=reason)

    # -- dispatching --------------------------------------------------------------
    def _promote_scheduled(self) -> None:
        now = time.monotonic()
        while self.scheduled and self.scheduled[0][0] <= now:
            self.reserved.append(heapq.heappop(self.scheduled)[2])

    def _dispatch(self) -> None:
        free = self.limits.room(self.pool.free_slots())
        if free <= 0 or not self.reserved:
            return
        held: list[Request] = []
        batch: list[Request] = []
        while free > 0 and self.reserved:
            request = self.reserved.popleft()
            if request.id in self.revokes:
                self.outcomes.not_run(request)
                continue
            if request.expired():
                self.outcomes.not_run(request, "expired", expired=True)
                continue
            rate = request.task.rate_per_second
            if rate is not None:
                bucket = self.buckets.get(request.name)
                if bucket is None:
                    bucket = self.buckets[request.name] = TokenBucket(rate)
                if not bucket.take():
                    held.append(request)
                    continue
            free -= 1
            batch.append(request)
        self.reserved.extendleft(reversed(held))
        self._rate_held = len(held)
        for request in self._acked_for_start(batch):
            self.limits.started += 1
            self._submit(request)

    def _acked_for_start(self, batch: list[Request]) -> list[Request]:
        """The requests that may start: late-ack ones, and early-ack ones the broker took the ack of.

        A message whose ack failed is delivered again, so running it here as well would run
        an early-ack task twice (a broker restart at the wrong moment did just that).
        """
        early = [request for request in batch if not request.acks_late]
        if not early:
            return batch
        failed = {id(request) for request in early if not self._ack(request)}
        try:
            self._flush_acks()  # batched acks (djq://) reach the broker before the tasks start
        except Exception as exc:
            logger.warning("could not ack %d task(s): %s", len(early), exc)
            failed = {id(request) for request in early}
        for request in early:
            if id(request) in failed:
                logger.warning("task %s[%s] not run: its ack failed, so the broker delivers it again",
                               request.name, request.id)
        return [request for request in batch if id(request) not in failed]

    def _widen_prefetch(self) -> None:
        """Keep held messages from taking the prefetch window from runnable ones.

        An eta task not yet due and a task over its rate limit stay unacked in this worker,
        and the broker counts them against the prefetch window; a few of them would stop
        every task queued behind from arriving. So the window grows by the number held
        (at most DJQ_WORKER_ETA_MAX_HELD) and shrinks back as they are let go. One QoS call
        per loop turn at most, and none while nothing is held.
        """
        if not self.prefetch_count or self.kombu_consumer is None:
            return  # 0 is no limit
        held = min(len(self.scheduled) + self._rate_held, int(djq_settings.WORKER_ETA_MAX_HELD))
        wanted = min(self.prefetch_count + held, MAX_PREFETCH)
        if wanted != self._applied_prefetch:
            self.kombu_consumer.qos(prefetch_count=wanted, apply_global=self._qos_global)
            self._applied_prefetch = wanted

    def _submit(self, request: Request) -> None:
        default_soft, default_hard = self.task_limits.get(request.name) or (self.soft_time_limit, self.time_limit)
        soft, hard = request.time_limits(default_soft, default_hard)
        self._warn_unenforced(request.name, soft, hard)
        seq = next(self._seq)
        self.active[seq] = request
        request.call_arg = request.call(seq, soft, hard, self.events is not None)
        request.time_start = time.time()
        if self.events is not None:
            self.events.send("task-started", uuid=request.id)
        handle = self.pool.apply_async(run_call, request.call_arg, self._on_done,
                                       soft_time_limit=soft, time_limit=hard)
        if handle is not None:
            self.handles[seq] = handle

    def _warn_unenforced(self, name: str, soft: float | None, hard: float | None) -> None:
        missing = self.pool.unsupported(soft=bool(soft), hard=bool(hard))
        if missing and name not in self._warned_limits:
            self._warned_limits.add(name)
            logger.warning("task %s has %s, which the %s pool cannot enforce (see docs/pools.md)",
                           name, " and ".join(missing), self.pool.name)

    def _release_parked(self) -> None:
        try:
            self.parking.release_due(lambda message: publish_now(message, self.broker_url))
        except Exception as exc:
            logger.warning("could not send waiting eta tasks back to the broker: %s", exc)

    def _check_revokes(self) -> None:
        """New revokes from the database; running tasks asked to terminate are stopped."""
        for task_id in self.revokes.refresh():
            signal = self.revokes.terminate.get(task_id)
            if signal is None:
                continue
            for seq, request in list(self.active.items()):
                if request.id == task_id:
                    self._terminate(seq, request, signal)

    def _terminate(self, seq: int, request: Request, signal: str) -> bool:
        handle = self.handles.get(seq)
        if handle is not None and self.pool.terminate_job(handle, signal_number(signal)):
            logger.warning("task %s[%s] revoked: terminating it with %s", request.name, request.id, signal)
            now = time.monotonic()
            self._terminated = {i: t for i, t in self._terminated.items() if now - t < 60}
            self._terminated[request.id] = now
            return True
        logger.warning("task %s[%s] revoked with terminate, but the %s pool cannot stop a running task: "
                       "it runs to its end", request.name, request.id, self.pool.name)
        return False

    def revoke_now(self, task_ids: list[str], *, terminate: bool = False,
                   signal: str = "SIGTERM") -> tuple[list[str], list[str]]:
        """A revoke pushed by remote control, in the consumer thread: mark the ids now
        (the database row, written by the sender, covers workers started later); with
        ``terminate``, stop their running tasks. Returns (stopped, could not stop)."""
        stopped: list[str] = []
        unstoppable: list[str] = []
        for task_id in task_ids:
            self.revokes.add(task_id, terminate, signal)
        if terminate:
            for seq, request in list(self.active.items()):
                if request.id in task_ids:
                    (stopped if self._terminate(seq, request, signal) else unstoppable).append(request.id)
            # the revoke's database row can reach this worker first (_check_revokes): a
            # task it already stopped is stopped, not "none running here"
            stopped += [i for i in task_ids if i in self._terminated and i not in stopped]
        return stopped, unstoppable

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
        while not self.stopping:
            try:
                self._run_calls()
                self._process_done()
                self._check_revokes()
                self._release_parked()
                self._promote_scheduled()
                self._dispatch()
                self._widen_prefetch()
                self._flush_acks()
                self._maybe_restore()
                if self.limits.used_up:
                    logger.info("--max-tasks %d reached: warm shutdown", self.limits.max_tasks)
                    self.stopping = True
                if self.stopping:
                    break
                if self.reserved and self.pool.free_slots() <= 0:
                    # Messages wait for a slot: what matters now is a task finishing.
                    self._done_event.wait(self._timeout())
                    self._done_event.clear()
                    continue
                self.connection.drain_events(timeout=self._timeout())
            except socket.timeout:
                if self.limits.burst and not self.reserved and not self.pool.active():
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

