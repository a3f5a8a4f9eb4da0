"""The prefork pool's fork server: one process, forked once at start, forks every child.

Why not fork children from the worker itself: the worker is multi-threaded, and SQLite
keeps the lock state of a process's connections in process memory. A child forked while
any worker thread was inside an SQLite statement inherits "this process holds a lock"
for ever, and every write it tries fails with "database is locked". This process is
forked before the worker runs any of that, and it never touches a database, so each
fork from it starts clean, whenever a child is replaced.

It talks to the supervisor over a socket pair: a request (one byte; ``M`` when the child
must measure its memory) gets back the child's pid and, passed as file descriptors, the
parent's ends of the child's job and result pipes and its sentinel (a pipe only the
child holds open). It reaps its children and writes ``(pid, exit code)`` (negative for a
signal, as ``Process.exitcode``) on the exits pipe. It dies with the worker, and its
children die with it (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import os
import select
import signal
import socket
import struct
import traceback
from multiprocessing.connection import Connection
from typing import Any

import billiard

from . import child as child_main

_PID = struct.Struct("!q")


class Spawner:
    """The parent's handle on the fork server."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self.process: Any = None
        #: the supervisor reads exit reports from this descriptor (non-blocking)
        self.exits = -1

    def start(self, inherited: list[int]) -> None:
        """Fork the server; ``inherited``: the worker's descriptors it and its children close."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        exits_r, exits_w = os.pipe()
        self.process = billiard.get_context("fork").Process(
            target=serve, name="djq-prefork-spawner", daemon=True,
            args=(theirs.fileno(), exits_w, [ours.fileno(), exits_r, *inherited], os.getpid()))
        try:
            self.process.start()
        finally:
            theirs.close()
            os.close(exits_w)
        ours.settimeout(10.0)  # it answers at once; a fork server that does not is dead or stuck
        self._sock, self.exits = ours, exits_r
        os.set_blocking(exits_r, False)

    def fork(self, measure_memory: bool) -> tuple[int, int, int, int]:
        """A new child: (pid, jobs fd, results fd, sentinel fd); OSError if the server fails."""
        if self._sock is None:
            raise OSError("the fork server is not running")
        self._sock.sendall(b"M" if measure_memory else b"F")
        data, fds, _, _ = socket.recv_fds(self._sock, _PID.size, 3)
        if len(data) != _PID.size or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            raise OSError("the fork server did not answer")
        (pid,) = _PID.unpack(data)
        return pid, fds[0], fds[1], fds[2]

    def alive(self) -> bool:
        return self.process is not None and self.process.exitcode is None

    def kill(self) -> None:
        """SIGKILL it (its children die with it)."""
        if self.process is not None and self.process.pid:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self, kill: bool = False) -> None:
        """Let it go: it exits once its children have (at once with ``kill``)."""
        if kill:
            self.kill()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.exits >= 0:
            os.close(self.exits)
            self.exits = -1

    def join(self, timeout: float) -> None:
        if self.process is not None:
            self.process.join(timeout)


# -- the fork server's side ------------------------------------------------------------
def serve(requests_fd: int, exits_fd: int, inherited_fds: list[int], worker: int) -> None:
    child_main.setup(worker, inherited_fds)
    requests = socket.socket(fileno=requests_fd)
    exits = Connection(exits_fd, readable=False)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes select through wake_w
    children: set[int] = set()
    closing = False
    while not closing or children:
        watch: list[Any] = [wake_r] if closing else [requests, wake_r]
        ready, _, _ = select.select(watch, [], [], 1.0)
        if wake_r in ready:
            _drain(wake_r)
        _reap(children, exits)
        if requests in ready:
            request = requests.recv(1)
            if not request:  # the worker let go: wait for the children, then leave
                closing = True
                continue
            pid = _fork_child(requests, exits_fd, [wake_r, wake_w, requests_fd], worker, request == b"M")
            children.add(pid)


def _fork_child(requests: socket.socket, exits_fd: int, own_fds: list[int], worker: int,
                measure_memory: bool) -> int:
    jobs_r, jobs_w = os.pipe()
    results_r, results_w = os.pipe()
    sentinel_r, sentinel_w = os.pipe()
    spawner = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in (jobs_w, results_r, sentinel_r, exits_fd, *own_fds):
                os.close(fd)
            child_main.serve(jobs_r, results_w, [], spawner, measure_memory)
            code = 0
        except BaseException:  # a child's last words, then out without the server's cleanup
            traceback.print_exc()
        finally:
            os._exit(code)
    for fd in (jobs_r, results_w, sentinel_w):
        os.close(fd)
    try:
        socket.send_fds(requests, [_PID.pack(pid)], [jobs_w, results_r, sentinel_r])
    finally:
        for fd in (jobs_w, results_r, sentinel_r):
            os.close(fd)
    return pid


def _reap(children: set[int], exits: Connection) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        try:
            exits.send((pid, os.waitstatus_to_exitcode(status)))
        except OSError:  # the worker stopped listening: nobody to tell
            pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
