"""SIGINT and SIGTERM as a clean stop: an exception the search turns into a partial result.

``Interrupted`` derives from BaseException so that no ``except Exception`` on the way
swallows it. ``ray.init`` installs its own SIGTERM handler (it exits 15 with a C++ stack
line), so ``rearm`` puts ours back after every connect.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_armed = False


class Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, as shells report them


def _raise(signum: int, frame) -> None:
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise ``Interrupted`` in the main thread."""
    global _armed
    before = {s: signal.getsignal(s) for s in SIGNALS}
    _armed = True
    rearm()
    try:
        yield
    finally:
        _armed = False
        for s, handler in before.items():
            signal.signal(s, handler)


def rearm() -> None:
    """Put the handlers back (after ``ray.init``) when inside ``interruptible``."""
    if _armed:
        for s in SIGNALS:
            signal.signal(s, _raise)


def interruption(exc: BaseException) -> Interrupted | None:
    """The ``Interrupted`` that ``exc`` is, or was raised from.

    Our handler can run inside Ray's compiled ``ray.wait`` (it checks for signals while it
    waits), and Ray 2.60 then raises ``SystemError: <cyfunction CoreWorker.wait> returned
    a result with an exception set``, with the ``Interrupted`` as its cause: seen when
    SIGTERM stopped a switchboard search (issue 25), which exited 1 with a traceback.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Interrupted):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
