"""Python logging through a rich console while a live display owns the terminal.

A log handler that writes straight to the terminal (Ray's ``PlainRayHandler``, a
``StreamHandler`` someone added to the root logger) prints between two refreshes of the
live view and tears it. While the view is up, such handlers are swapped for one
``RichHandler`` on the live console, which prints above the display; on exit the original
handlers come back. File handlers are left alone: they do not touch the terminal.
Output written below Python, to file descriptor 2, is tailed into the console too
(``raylog.FdTail``), unless the command's ``RayLog`` owns it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.text import Text

from distprec.raylog import FdTail, armed


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
        if _fileno(console) != 2 and armed() is None:
            # Output written below Python, to fd 2 (Ray's C++ core worker), printed above
            # the view; never the stream the view is drawn on. Under a RayLog, fd 2 is
            # its log file once Ray is up.
            stack.enter_context(FdTail(lambda text: live.console.print(
                Text(text, style="dim"), soft_wrap=True)))
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
