"""Process control for runs trained side by side: a lock per run, stop signals, worker termination."""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from types import FrameType
from typing import Iterator, Optional

from ..errors import UserError

__all__ = ["Stopped", "exclusive_lock", "stop_signals_raise", "terminate_workers"]


@contextlib.contextmanager
def exclusive_lock(path: str, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created; it holds our PID) while the block runs.

    Another process holding it is a UserError naming ``what``, the lock and its PID. The kernel
    drops the lock when its holder dies, however it dies, so a stale file never blocks a rerun.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by spawned processes (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown (starting)"
            raise UserError(f"{what} is in use by another process (lock {path} held by PID {holder}); wait for it "
                            "to end or stop it, then rerun") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class Stopped(BaseException):
    """Raised in the parent by SIGTERM/SIGINT while runs train (a BaseException: nothing swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: Optional[FrameType]) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`Stopped` in the block (handlers can only be set in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def terminate_workers(pool: ProcessPoolExecutor, grace: float = 10.0) -> int:
    """Terminate (then kill, after ``grace`` seconds) the pool's worker processes; returns how many ran.

    ProcessPoolExecutor has no public way to stop running work before Python 3.14, and its
    shutdown waits for the runs to end: the worker processes are stopped directly.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    alive = [p for p in processes if p.is_alive()]
    for p in alive:
        p.terminate()
    deadline = time.monotonic() + grace
    for p in alive:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    return len(alive)
