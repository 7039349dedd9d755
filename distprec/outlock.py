"""One search per output: a lock beside each output, held for the life of the search.

Two searches with the same ``-o`` (or ``--journal``) both passed the start-up guard
before either had journaled a verdict, and the second replaced the first one's journal:
the first lost its verdicts and could not resume (issue 26). Each output now has a lock
file beside it (``r.journal.jsonl.lock``) holding the PID of the search that writes it,
locked with ``flock``: a second search is refused with one line naming that PID. The
kernel drops a flock when its process dies, however it dies, so the lock file a
SIGKILLed search leaves is stale by construction and the next search takes it over. A
search that ends removes its lock files.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Mapping
from pathlib import Path

from distprec.errors import InputError

_held: list[tuple[Path, int]] = []  # (lock file, its locked descriptor), in taking order


def lock_path(path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(path)}.lock")


def _holder(fd: int) -> str:
    """The PID written in a lock file; its holder may not have written it yet."""
    for _ in range(10):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.05)
    return "unknown"


def _take(lock: Path, target: str) -> int:
    for _ in range(20):  # each turn loses only to a search that ended meanwhile
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise InputError(f"cannot write {target}: its lock file {lock}: "
                             f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise InputError(f"another search (PID {pid}) is writing {target}: wait for "
                             "it to end, or give another -o (or --journal)") from None
        try:  # a search that ended removed the file we opened: take the new one
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)
    raise InputError(f"cannot lock {target}: its lock file {lock} keeps changing")


def hold(outputs: Mapping[str, str | None]) -> None:
    """Lock each given output for the rest of the command (``release`` ends it).

    InputError, one line naming the PID, when another live search holds one; nothing
    is locked then.
    """
    taken: list[tuple[Path, int]] = []
    seen: set[str] = {os.path.realpath(lock) for lock, _ in _held}
    try:
        for path in outputs.values():
            if not path:
                continue
            lock = lock_path(path)
            if os.path.realpath(lock) in seen:
                continue
            seen.add(os.path.realpath(lock))
            taken.append((lock, _take(lock, str(path))))
    except BaseException:
        _drop(taken)
        raise
    _held.extend(taken)


def _drop(locks: list[tuple[Path, int]]) -> None:
    for lock, fd in reversed(locks):
        try:  # removed while still locked, and only if it is still ours
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                lock.unlink()
        except OSError:
            pass
        os.close(fd)


def release() -> None:
    """Remove and unlock every lock this process holds (the command is over)."""
    _drop(_held)
    _held.clear()
