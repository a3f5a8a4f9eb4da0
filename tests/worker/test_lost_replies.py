"""Early acks whose round trip fails: every task still runs exactly once.

A worker acks an early-ack task before running it: on Redis the acks ride in the take
script's round trip, on djq:// they are a DELETE of the message rows. If that round
trip fails, the worker cannot tell from the error alone whether the broker took the
acks (the reply was lost: the messages are gone, so the worker must run them) or never
saw them (the messages come back, so running them now would run them twice). A broker
stopped at the wrong moment does either; a proxy between the worker and the broker does
it on cue here, and a ledger outside djq counts the runs.
"""
from __future__ import annotations

import pytest

from tests.conftest import wait_for
from tests.faultproxy import Command, PostgresFramer, in_front_of, parse_command
from tests.ledger import Ledger
from tests.testapp.tasks import ledgered
from tests.worker.test_broker_restart import _count_done

TASKS = 20


def _take_with_acks(command: Command) -> bool:
    """The take script carrying acks (djq/messaging/redis_take.py's KEYS and ARGV): the
    queue lists, kombu's unacked hash and index, the receipt if any; then the limit, the
    time, the batch number if there is a receipt, a flag per list, and the acks."""
    if command[0].upper() not in (b"EVALSHA", b"EVAL") or len(command) < 3:
        return False
    keys = command[3:3 + int(command[2])]
    index = next((i for i, key in enumerate(keys) if key.endswith(b"unacked_index")), None)
    if index is None:
        return False
    lists, receipts, argv = index - 1, len(keys) - index - 1, command[3 + len(keys):]
    return len(argv) > 2 + receipts + lists


def _deletes_acked_rows(texts: Command) -> bool:
    """The djq:// broker's ack: the DELETE of claimed message rows by id (with or without
    the STARTED rows stored in the same statement)."""
    return any(b"DELETE FROM" in text and b"queuemessage" in text and (b"WHERE id IN" in text or b"id = ANY" in text)
               for text in texts)


@pytest.mark.parametrize("mode", ["after", "before"])
@pytest.mark.parametrize("db_alias", ["redis", "postgres"], indirect=True)
def test_an_early_ack_whose_round_trip_fails_runs_its_task_exactly_once(broker, start_worker, tmp_path,
                                                                        mode) -> None:
    if broker.leg == "redis":
        (proxy, env), pick = in_front_of("redis", lambda: parse_command), _take_with_acks
    else:
        (proxy, env), pick = in_front_of("postgres", PostgresFramer), _deletes_acked_rows
    try:
        # Redis redelivers what was not taken after the visibility timeout; djq:// asks within
        # half of it after the failure (a loaded machine needs room)
        visibility = "6" if broker.leg == "redis" else "30"
        worker = start_worker("-P", "threads", "-c", "4", env={**env, "DJQ_TEST_VISIBILITY_TIMEOUT": visibility})
        proxy.arm(pick, mode)
        ledger = Ledger(tmp_path / "ledger")
        ids = [ledgered.delay(str(ledger), 0.02).id for _ in range(TASKS)]
        try:
            wait_for(lambda: _count_done(broker, ids) == TASKS, timeout=60, interval=0.2,
                     what=f"all {TASKS} tasks to succeed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; ran {sum(ledger.starts()[i] > 0 for i in ids)}; "
                                 f"worker log:\n{worker.output[-4000:]}") from None
        assert len(proxy.cuts) == 1, "the proxy cut one take carrying acks"
    finally:
        proxy.close()
    starts = ledger.starts()
    assert {i: starts[i] for i in ids if starts[i] != 1} == {}, "every task ran exactly once"
    output = worker.output
    assert "asking again" in output, output[-4000:]
    if mode == "after":  # Redis ran the script: the worker ran the tasks it had acked
        assert "the broker took the acks of" in output, output[-4000:]
    else:  # Redis never saw it: the messages came back after the visibility timeout
        assert "not run: its ack failed" in output, output[-4000:]
