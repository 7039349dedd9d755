"""SIGINT and SIGTERM as a clean stop: an exception the search turns into a partial result.

``Interrupted`` derives from BaseException so that no ``except Exception`` on the way
swallows it. ``ray.init`` installs its own SIGTERM handler (it exits 15 with a C++ stack
line), so ``rearm`` puts ours back after every connect.

Only the first signal stops the search. From then on the process is ending: it kills its
workers, shuts Ray down and writes the partial result, and a second signal (Ctrl-C then a
``kill``, a service manager's SIGTERM after SIGINT) must not cut that short. A second
``Interrupted`` raised inside Ray's Cython calls surfaced as a ``SystemError`` traceback,
and the default disposition that ``ray.shutdown`` leaves (``shutdown_ray``) or Python's
exit puts back killed the process before it wrote its result or its exit code (issue 26).
So later signals are ignored until the process exits; SIGKILL still ends it, and the
journal keeps every verdict.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_armed = False
_stopping: int | None = None  # the signal that began the stop, once one did


class Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, as shells report them


def _raise(signum: int, frame) -> None:
    global _stopping
    if _stopping is not None:  # a stop is under way (a signal queued before _hold)
        return
    _stopping = signum
    _hold()  # before raising: the next signal may come while this one unwinds
    raise Interrupted(signum)


def interruption(exc: BaseException) -> Interrupted | None:
    """The ``Interrupted`` behind ``exc``, if any. A signal that lands while Ray's Cython
    code waits (``ray.wait``, ``ray.get``) runs our handler inside it, and Ray then raises
    ``SystemError("... returned a result with an exception set")`` with the
    ``Interrupted`` as its cause: it is still the user's stop, not a crash."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, Interrupted):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _hold() -> None:
    """SIG_IGN at the C level, not a Python function: any thread may take the signal, and
    Python's own finalization puts SIG_DFL back only in place of Python handlers (the last
    second of the interpreter's exit, where a SIGTERM still killed the process)."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def ignore_further(signum: int) -> None:
    """A stop that began outside ``interruptible`` (a KeyboardInterrupt): hold it too."""
    global _stopping
    if _stopping is None:
        _stopping = signum
    _hold()


def stopping() -> bool:
    """Whether a signal has begun a stop (later ones are ignored)."""
    return _stopping is not None


@contextmanager
def interruptible() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise ``Interrupted`` in the main thread, once.

    On leaving, the handlers found on entry come back, unless a stop began: then later
    signals stay ignored for the life of the process (``reset`` undoes that, for tests).
    """
    global _armed
    before = {s: signal.getsignal(s) for s in SIGNALS}
    _armed = True
    rearm()
    try:
        yield
    finally:
        _armed = False
        if _stopping is None:
            for s, handler in before.items():
                signal.signal(s, handler)
        else:
            _hold()


def rearm() -> None:
    """Put the handlers back (after ``ray.init``) when inside ``interruptible``, and the
    ignoring ones once a stop began."""
    if _stopping is not None:
        _hold()
    elif _armed:
        for s in SIGNALS:
            signal.signal(s, _raise)


def shutdown_ray() -> None:
    """``ray.shutdown``, then the handlers again.

    Ray's core worker sets SIGTERM (with SIGSEGV, SIGABRT...) to SIG_DFL at the C level
    when it disconnects, while Python still names our handler: a SIGTERM after that
    killed the process (exit -15, no result written).
    """
    import ray

    ray.shutdown()
    rearm()


def reset() -> None:
    """Forget a stop and restore the default handlers (a process that goes on: tests)."""
    global _stopping
    _stopping = None
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
