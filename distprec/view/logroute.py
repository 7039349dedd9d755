"""Python logging through a rich console while a live display owns the terminal.

A log handler that writes straight to the terminal (Ray's ``PlainRayHandler``, a
``StreamHandler`` someone added to the root logger) prints between two refreshes of the
live view and tears it. While the view is up, such handlers are swapped for one
``RichHandler`` on the live console, which prints above the display; on exit the original
handlers come back. File handlers are left alone: they do not touch the terminal.
Output written below Python, to file descriptor 2, is tailed into the console too
(``StderrThroughConsole``).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.text import Text


class _ConsoleHandler(RichHandler):
    """A RichHandler that keeps its own format.

    ``ray.init(configure_logging=True)`` sets its format string on every handler of the
    "ray" logger; on a RichHandler that would print the time and level twice.
    """

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 (logging API)
        return None


def _to_terminal(handler: logging.Handler) -> bool:
    if isinstance(handler, logging.FileHandler) or not isinstance(handler,
                                                                   logging.StreamHandler):
        return False
    stream = getattr(handler, "stream", None)
    return stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__) or \
        type(handler).__name__ == "PlainRayHandler"


def _loggers() -> list[logging.Logger]:
    known = [v for v in logging.Logger.manager.loggerDict.values()
             if isinstance(v, logging.Logger)]
    return [logging.getLogger(), logging.getLogger("ray"), *known]


@contextmanager
def live_view(console: Console, frame, refresh_per_second: float) -> Iterator[Live]:
    """A live display that Python logs, Ray's loggers and fd 2 all print above."""
    with ExitStack() as stack:
        live = stack.enter_context(Live(get_renderable=frame, console=console,
                                        refresh_per_second=refresh_per_second,
                                        redirect_stdout=True, redirect_stderr=True))
        stack.enter_context(logs_through(live.console))
        if _fileno(console) != 2:  # never capture the stream the view is drawn on
            stack.enter_context(StderrThroughConsole(live.console))
        yield live


def _fileno(console: Console) -> int | None:
    try:
        return console.file.fileno()
    except (AttributeError, OSError, ValueError):
        return None


@contextmanager
def logs_through(console: Console) -> Iterator[logging.Handler]:
    """Route terminal log handlers (root, "ray" and any other logger) through ``console``."""
    handler = _ConsoleHandler(console=console, show_path=False, rich_tracebacks=False,
                              markup=False, log_time_format="%H:%M:%S")
    logging.Handler.setFormatter(handler, logging.Formatter("%(name)s: %(message)s"))
    saved: list[tuple[logging.Logger, list[logging.Handler]]] = []
    seen: set[int] = set()
    for logger in _loggers():
        if id(logger) in seen:
            continue
        seen.add(id(logger))
        terminal = [h for h in logger.handlers if _to_terminal(h)]
        is_home = logger is logging.getLogger() or logger.name == "ray"
        if not terminal and not is_home:
            continue
        saved.append((logger, list(logger.handlers)))
        logger.handlers = [h for h in logger.handlers if not _to_terminal(h)]
        if terminal or logger is logging.getLogger():
            logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger, handlers in saved:
            logger.handlers = handlers


class StderrThroughConsole:
    """Send what is written to file descriptor 2 through ``console`` while the view is up.

    Ray's C++ core worker in the driver writes its own log lines (for example the
    ``core_worker.cc`` warning about actor constructor arguments) straight to fd 2,
    below Python's reach: rich's stdout/stderr redirection never sees them. fd 2 is
    pointed at a temporary file, and a thread tails that file into ``console.print``,
    which rich places above the live display. A file rather than a pipe: Ray daemons
    started meanwhile inherit fd 2, and a pipe nobody drains would block them.
    """

    def __init__(self, console: Console, poll_s: float = 0.2) -> None:
        self.console, self.poll_s = console, poll_s
        self._saved: int | None = None
        self._file = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StderrThroughConsole:
        try:
            sys.__stderr__.flush()
            self._saved = os.dup(2)
        except (OSError, AttributeError, ValueError):
            return self  # no fd 2 to take over (embedded interpreter): nothing to do
        self._file = tempfile.TemporaryFile(mode="w+b")
        os.dup2(self._file.fileno(), 2)
        self._thread = threading.Thread(target=self._tail, name="distprec-stderr",
                                        daemon=True)
        self._thread.start()
        return self

    def _tail(self) -> None:
        offset, pending = 0, b""
        while True:
            stopping = self._stop.wait(self.poll_s)
            data = os.pread(self._file.fileno(), 1 << 16, offset)
            while data:
                offset += len(data)
                pending += data
                data = os.pread(self._file.fileno(), 1 << 16, offset)
            *lines, pending = pending.split(b"\n")
            if stopping and pending:
                lines, pending = [*lines, pending], b""
            for line in lines:
                text = line.decode(errors="replace").rstrip()
                if text:
                    self.console.print(Text(text, style="dim"), soft_wrap=True)
            if stopping:
                return

    def __exit__(self, *exc) -> None:
        if self._saved is None:
            return
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._file is not None:
            self._file.close()
