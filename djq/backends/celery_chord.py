"""Chords counted in Celery's Redis keys, so Celery and djq workers share one header.

With the Celery Redis result bridge (backends/celery_bridge.py), a chord's header is
counted where Celery's Redis backend counts it, under ``celery-taskset-meta-<group id>``:

- ``.s`` the header's size, set by the sender (a Celery client's ``set_chord_size``,
  or djq's ``chord.apply_async``);
- ``.j`` a sorted set of ``[1, task id, state, result]`` (JSON), scored by the task's
  ``group_index``, one per header task that ended; ``.d`` the ``<id>:<index>`` members
  already counted (a redelivered task counts once); ``.t`` a correction to the size;
- ``.c`` the claim of the one worker that sends the body, then ``done``.

Each header task that ends adds itself and reads the count in one Lua script; the task
that makes the count reach the size takes the claim, reads the results in header order
and sends the body (or fails it), then removes the keys. A Celery worker and a djq
worker may each run part of the same header. A chord with djq-only producers and
workers (no bridge) keeps its ``ChordCounter`` row instead (worker/flow.py).
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from kombu.utils.json import dumps as json_dumps
from kombu.utils.json import loads as json_loads

from .. import states
from .celery_bridge import GROUP_KEY_PREFIX

logger = logging.getLogger(__name__)

#: the seconds a worker holds the claim to send the body before another may take it
CLAIM_SECONDS = 10

_PART_DONE = """
local jkey, tkey, skey, dkey, ckey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member, value, score = ARGV[1], ARGV[2], ARGV[3]
local expires, claim_seconds, token = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
if redis.call('GET', ckey) == 'done' then
    return {-1, false, false, 0}
end
if redis.call('SISMEMBER', dkey, member) == 0 then
    redis.call('ZADD', jkey, score, value)
    redis.call('SADD', dkey, member)
end
local count = redis.call('ZCOUNT', jkey, '-inf', '+inf')
if expires > 0 then
    for _, key in ipairs({jkey, tkey, skey, dkey}) do redis.call('EXPIRE', key, expires) end
end
local diff = redis.call('GET', tkey)
local size = redis.call('GET', skey)
local claimed = 0
if size and count == tonumber(size) + tonumber(diff or 0) then
    if redis.call('SET', ckey, token, 'NX', 'EX', claim_seconds) then claimed = 1 end
end
return {count, diff, size, claimed}
"""

_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
    redis.call('SET', KEYS[1], 'done', 'EX', tonumber(ARGV[2]))
    return 1
end
return 0
"""


def _keys(group_id: str) -> dict[str, str]:
    base = GROUP_KEY_PREFIX + group_id
    return {name: base + "." + name for name in "jtsdc"}


def _expires() -> int:
    from ..conf import djq_settings

    return int(djq_settings.RESULT_EXPIRES or 0)


def set_size(client: Any, group_id: str, size: int) -> None:
    """What a sender does before the header goes out: a new run of ``group_id`` of ``size`` tasks."""
    keys = _keys(group_id)
    client.delete(keys["c"])
    client.set(keys["s"], size, ex=_expires() or None)


class Claim:
    """The right to send a completed chord's body: its header's results, in header order."""

    def __init__(self, client: Any, group_id: str, token: str, entries: list[list[Any]]) -> None:
        self.client, self.group_id, self.token = client, group_id, token
        #: ``[1, task id, state, result]`` per header task
        self.entries = entries

    def failed(self) -> tuple[str, Any] | None:
        """(task id, stored exception) of the first header task that did not succeed."""
        return next(((tid, value) for _, tid, state, value in self.entries if state != states.SUCCESS), None)

    def values(self) -> list[Any]:
        return [value for _, _, _, value in self.entries]

    def release(self) -> None:
        """The body is sent (or failed): remove the header's keys; a late copy of a
        header task then finds the chord done."""
        keys = _keys(self.group_id)
        self.client.register_script(_FINISH)(keys=[keys["c"], keys["j"], keys["t"], keys["s"], keys["d"]],
                                             args=[self.token, max(_expires(), 300)])


def part_done(client: Any, group_id: str, task_id: str, group_index: Any, state: str, value: Any) -> Claim | None:
    """Count a header task that ended; the Claim if it completed the header."""
    keys = _keys(group_id)
    score = "+inf" if group_index is None else group_index
    token = uuid.uuid4().hex
    script = client.register_script(_PART_DONE)
    count, _diff, _size, claimed = script(
        keys=[keys["j"], keys["t"], keys["s"], keys["d"], keys["c"]],
        args=[f"{task_id}:{score}", json_dumps([1, task_id, state, value]), score, _expires(), CLAIM_SECONDS, token])
    if count == -1 or not claimed:
        return None
    entries = [json_loads(raw) for raw in client.zrange(keys["j"], 0, -1)]
    return Claim(client, group_id, token, entries)
