"""The parent's end of the pipes to one prefork child: pickled messages, never blocking.

The frames are those of ``multiprocessing.connection.Connection`` (a 4-byte big-endian
length, or -1 and an 8-byte length, then a pickle), so the child simply uses
``Connection.send``/``recv`` on its ends. The parent's ends are non-blocking: a child that
stops reading (stopped, stuck) can fill its pipe, and no thread of the worker may then
wait on it. Unsent bytes stay in ``outbox`` and the supervisor writes them when it can.
These pipes join processes of one worker, so pickle is safe here: what came from the
broker was decoded before it got this far.
"""
from __future__ import annotations

import os
import struct
from multiprocessing.reduction import ForkingPickler
from typing import Any

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")
_CHUNK = 1 << 16


def frame(message: Any) -> bytes:
    payload = bytes(ForkingPickler.dumps(message))
    if len(payload) > 0x7FFFFFFF:
        return _SHORT.pack(-1) + _LONG.pack(len(payload)) + payload
    return _SHORT.pack(len(payload)) + payload


class Channel:
    """Writes frames to a child's job pipe and reads whole frames from its result pipe."""

    def __init__(self, to_child: int, from_child: int) -> None:
        os.set_blocking(to_child, False)
        os.set_blocking(from_child, False)
        self.to_child = to_child
        self.from_child = from_child
        self.outbox = bytearray()
        self._inbox = bytearray()
        #: the child closed its end (it exited, or is exiting)
        self.eof = False
        self.closed = False

    def post(self, data: bytes) -> bool:
        """Queue ``data`` and write what the pipe takes now; False if some is left over.

        Raises BrokenPipeError when the child is gone and nothing of ``data`` was sent."""
        self.outbox += data
        return self.flush()

    def flush(self) -> bool:
        while self.outbox:
            try:
                written = os.write(self.to_child, self.outbox)
            except BlockingIOError:
                return False
            del self.outbox[:written]
        return True

    def receive(self) -> list[Any]:
        """Every whole message the child has written so far (never waits)."""
        while not self.eof:
            try:
                data = os.read(self.from_child, _CHUNK)
            except BlockingIOError:
                break
            except OSError:  # the descriptor went away under us: nothing more will come
                data = b""
            if not data:
                self.eof = True
                break
            self._inbox += data
        return self._frames()

    def _frames(self) -> list[Any]:
        messages = []
        inbox = self._inbox
        while len(inbox) >= 4:
            (size,) = _SHORT.unpack_from(inbox)
            start = 4
            if size == -1:
                if len(inbox) < 12:
                    break
                (size,) = _LONG.unpack_from(inbox, 4)
                start = 12
            if len(inbox) < start + size:
                break
            messages.append(ForkingPickler.loads(bytes(inbox[start:start + size])))
            del inbox[:start + size]
        return messages

    def close(self) -> None:
        if self.closed:  # closing twice could close a descriptor since reused elsewhere
            return
        self.closed = True
        for fd in (self.to_child, self.from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self.eof = True
