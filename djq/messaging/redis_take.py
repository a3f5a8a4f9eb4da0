"""The two Redis steps behind djq's ``redis://`` consumer: the atomic take and the idle watch.

``TAKE_SCRIPT`` pops up to a limit of messages from a queue's priority lists and, in the
same script (Redis runs a script as one step), records each in kombu's ``unacked`` hash
(``tag -> [payload, exchange, routing_key]``) and ``unacked_index`` zset (``tag -> time
taken``). Whatever happens to the reply afterwards, every popped message is either
delivered or restored by ``restore_visible`` once the visibility timeout has passed.
The acks it carries are numbered in the channel's receipt, so a consumer whose reply
was lost can ask afterwards whether they were taken.

``Watchers`` let an idle consumer block without taking anything: one connection per
list, each blocked in ``BLMOVE list list RIGHT RIGHT`` (a move onto itself, which leaves
the list as it was). Redis answers as soon as the list has a message; the consumer then
takes with the script. A watch reply lost with its connection loses nothing.
"""
from __future__ import annotations

import time
from typing import Any

import redis

#: seconds an ack receipt is kept after its last batch: longer than any reconnect that
#: asks about it
RECEIPT_TTL = 86400
#: batches an ack receipt remembers (the consumer asks about a failed one at its next turn)
RECEIPT_KEEP = 64

#: KEYS: the lists to take from, in order, then the unacked hash, the unacked index and
#: the channel's ack receipt. ARGV: limit, time taken, the number of this batch of acks,
#: then per list "1" to record its messages as unacked or "0" (a no_ack consumer: nothing
#: will ever ack them), then the delivery tags of messages acked since the last call,
#: removed from the hash and index first (the consumer's acks and its next take share one
#: round trip). With acks, the batch number is added to the receipt (a sorted set of
#: the last RECEIPT_KEEP numbers): when the reply is lost (Redis shut down right after
#: the script ran), the receipt tells whether those acks were taken. Returns [list number, payload, ...].
#: The hash entry is built around the payload's own text, so it is byte for byte what
#: was queued (cjson would rewrite it: empty arrays become objects, numbers change).
TAKE_SCRIPT = """
local limit = tonumber(ARGV[1])
local lists = #KEYS - 3
local unacked, index, receipt = KEYS[lists + 1], KEYS[lists + 2], KEYS[lists + 3]
for first = lists + 4, #ARGV, 1000 do
  local tags = {}
  for j = first, math.min(first + 999, #ARGV) do tags[#tags + 1] = ARGV[j] end
  redis.call('ZREM', index, unpack(tags))
  redis.call('HDEL', unacked, unpack(tags))
end
if #ARGV >= lists + 4 then
  redis.call('ZADD', receipt, ARGV[3], ARGV[3])
  redis.call('ZREMRANGEBYRANK', receipt, 0, -RECEIPT_KEEP - 1)
  redis.call('EXPIRE', receipt, RECEIPT_TTL)
end
local out = {}
local taken = 0
for i = 1, lists do
  if taken >= limit then break end
  local items = redis.call('RPOP', KEYS[i], limit - taken)
  if items then
    for _, item in ipairs(items) do
      if ARGV[i + 3] == '1' then
        local ok, message = pcall(cjson.decode, item)
        if ok and type(message) == 'table' and type(message.properties) == 'table'
            and message.properties.delivery_tag then
          local props = message.properties
          local info = type(props.delivery_info) == 'table' and props.delivery_info or {}
          local tag = props.delivery_tag
          redis.call('ZADD', index, ARGV[2], tag)
          redis.call('HSET', unacked, tag, '[' .. item .. ',' .. cjson.encode(info.exchange or '')
                     .. ',' .. cjson.encode(info.routing_key or '') .. ']')
        end
      end
      out[#out + 1] = i
      out[#out + 1] = item
      taken = taken + 1
    end
  end
end
return out
""".replace("RECEIPT_TTL", str(RECEIPT_TTL)).replace("RECEIPT_KEEP", str(RECEIPT_KEEP))

#: A watch that has not answered this long after its server-side timeout is on a dead
#: (half-open) connection: drop it and watch again.
WATCH_GRACE = 25.0


class Watchers:
    """Blocking, non-destructive waits on lists; one connection per list being watched."""

    def __init__(self, connparams: dict[str, Any], timeout: float) -> None:
        params = dict(connparams)
        params["max_connections"] = None  # one per list: more than kombu's default of 10
        self._params = params
        self._pool: redis.ConnectionPool | None = None
        self.timeout = timeout
        self._connections: dict[str, Any] = {}
        #: list -> when its BLMOVE was sent, while one is pending
        self.pending: dict[str, float] = {}

    def arm(self, keys: list[str]) -> None:
        """Send a watch on every list in ``keys`` that has none pending."""
        now = time.monotonic()
        for key in keys:
            sent = self.pending.get(key)
            if sent is not None and now - sent < self.timeout + WATCH_GRACE:
                continue
            connection = self._connection(key)
            if sent is not None:
                connection.disconnect()
            connection.send_command("BLMOVE", key, key, "RIGHT", "RIGHT", self.timeout)
            self.pending[key] = now

    def sockets(self) -> dict[int, str]:
        """fd -> list, for the connections with a watch pending."""
        return {self._connections[key]._sock.fileno(): key for key in self.pending
                if self._connections[key]._sock is not None}

    def read(self, key: str) -> None:
        """Read a watch's answer (a message left in place, or nil at its timeout)."""
        self.pending.pop(key, None)
        self._connections[key].read_response()

    def _connection(self, key: str) -> Any:
        connection = self._connections.get(key)
        if connection is None:
            if self._pool is None:
                self._pool = redis.ConnectionPool(**self._params)
            connection = self._connections[key] = self._pool.get_connection()
        return connection

    def close(self) -> None:
        self.pending.clear()
        self._connections.clear()
        if self._pool is not None:
            self._pool.disconnect()
            self._pool = None
