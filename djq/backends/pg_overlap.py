"""A PostgreSQL statement sent now and answered later, so other work overlaps its round trip.

``delay()`` on Redis or RabbitMQ with results in PostgreSQL inserts the task's PENDING row,
then publishes the message: two round trips in series, the first one waiting on a commit.
Outside a transaction the two do not depend on each other (a PENDING row only ever creates
a row, so a worker that stores STARTED first keeps it), so ``send`` puts the INSERT on the
wire without waiting, the caller publishes meanwhile, and ``Sent.answer`` reads the
server's answer afterwards.

It speaks to the psycopg 3 connection under Django's through libpq's own calls
(``send_query_params``, ``consume_input``, ``get_result``), with parameters dumped by
psycopg's ``Transformer``, and leaves the connection idle, as psycopg expects it, whatever
happens: ``answer`` always reads every result, and a connection it cannot read is closed.
"""
from __future__ import annotations

import select
import time
from typing import Any

#: seconds ``answer`` waits for the server before it gives the connection up
ANSWER_TIMEOUT = 30.0


class Sent:
    """One statement on the wire; ``answer`` waits for it (once)."""

    def __init__(self, connection: Any, sql: str, started: float | None) -> None:
        self.connection = connection
        self.sql = sql
        self._started = started
        self._answered = False

    def answer(self) -> None:
        """Wait for the statement's result; raises Django's DatabaseError if it failed."""
        if self._answered:
            return
        self._answered = True
        from psycopg import pq

        connection = self.connection
        pgconn = connection.connection.pgconn
        error: str | None = None
        try:
            with connection.wrap_database_errors:
                for result in _results(pgconn):
                    if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
                        message = result.error_message
                        error = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
        except Exception:
            connection.close()  # half-read: no later statement may run on it
            raise
        finally:
            if self._started is not None:
                connection.queries_log.append({"sql": self.sql, "time": f"{time.monotonic() - self._started:.3f}"})
        if error is not None:
            from django.db import DatabaseError

            raise DatabaseError(error.strip())


def send(connection: Any, sql: str, params: list[Any]) -> Sent | None:
    """Put ``sql`` (placeholders ``$1``, ``$2`` ...) on the wire of Django's ``connection``
    without waiting; None where that cannot be done (psycopg 2, inside a transaction, a
    connection that is not idle): the caller runs the statement as usual."""
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3 or connection.in_atomic_block or not connection.get_autocommit():
        return None
    from psycopg import pq
    from psycopg.adapt import PyFormat, Transformer

    connection.ensure_connection()
    raw = connection.connection
    pgconn = raw.pgconn
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return None
    transformer = Transformer(raw)
    values = transformer.dump_sequence(params, [PyFormat.AUTO] * len(params))
    started = time.monotonic() if connection.queries_logged else None
    with connection.wrap_database_errors:
        try:
            pgconn.send_query_params(sql.encode(), values, transformer.types, transformer.formats)
            _flush(pgconn)
        except Exception:
            connection.close()
            raise
    return Sent(connection, sql, started)


def _ready(fd: int, *, write: bool, timeout: float) -> bool:
    """Whether ``fd`` can be read (written) within ``timeout`` seconds (poll where there is one:
    no limit on the fd's number; gevent's patched select where gevent took poll away)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLOUT if write else select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000))
    lists: tuple[list[int], list[int]] = ([], [fd]) if write else ([fd], [])
    return any(select.select(*lists, [], max(0.0, timeout))[:2])


def _flush(pgconn: Any) -> None:
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while pgconn.flush():  # 1: more to send (the socket is non-blocking)
        if not _ready(pgconn.socket, write=True, timeout=deadline - time.monotonic()):
            raise TimeoutError("PostgreSQL did not take the statement in time")


def _results(pgconn: Any) -> list[Any]:
    from psycopg import OperationalError

    deadline = time.monotonic() + ANSWER_TIMEOUT
    results: list[Any] = []
    while True:
        pgconn.consume_input()
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                return results
            results.append(result)
        left = deadline - time.monotonic()
        if left <= 0 or not _ready(pgconn.socket, write=False, timeout=left):
            raise OperationalError("PostgreSQL did not answer in time")
